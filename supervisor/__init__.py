"""Supervising model workers, as gunicorn's arbiter supervises its own: spawning them inside the
sandbox, warming them, handing them out, watching, reaping and replacing them, and the ways a
caller reaches them (a warm pool, a fresh process per frame, the worker service over TCP).

Imports go down the stack only: the frontend uses this package; this package starts `worker`
processes (and imports only its limits) and speaks `protocol`. Nothing here imports
TensorFlow."""
