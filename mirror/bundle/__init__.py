"""The bundle: one reproducible, signed `.tar.zst` that can be read without unpacking.

Layout and rationale: docs/BUNDLE-FORMAT.md. `writer` builds it, `reader` seeks into it,
`verify` checks it in one streaming pass, `inspect` reads only its head.
"""
