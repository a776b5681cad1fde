"""Clients of the service: `mobilenet-classify`, a folder of photos classified by a running
server (client/remote.py) or by workers it starts itself (client/local.py)."""
