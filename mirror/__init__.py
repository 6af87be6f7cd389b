"""mirror: take container, Helm and pack registries across an air gap."""

__version__ = "0.1.0"
