"""`mirror serve`: a verified bundle as a read-only OCI registry and Helm repositories.

`store.py` names what is served (the repositories `import` would create), `app.py` is the
distribution pull API over it as a WSGI application, `helm.py` the static Helm
repositories, and `server.py` trusts the bundle and runs the HTTP server.
"""
