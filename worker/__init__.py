"""The TensorFlow worker: the only place models run. Runtimes are imported lazily per format."""
