"""Our own OCI Distribution client: the layer where oras-py 0.2.x is unsound (see ARCHITECTURE)."""
