"""Stores content is written to: a registry, a bundle, a static Helm folder."""
