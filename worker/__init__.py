"""The TensorFlow worker: the only place models run, and what runs inside the sandbox (the
supervisor starts it there). Runtimes are imported lazily per format."""
