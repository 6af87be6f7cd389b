"""OCI value types shared by every store: descriptors, media types, digests, graph edges."""
