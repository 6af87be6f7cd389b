"""Stores by kind: a registry, the bundle, a Helm folder, content built in memory. Each class
is read and written through the protocols in `interface.py`, so export, import and serve
are one copy engine between stores."""
