"""Stores content is read from: a registry, a bundle, a Helm repository, pack folders."""
