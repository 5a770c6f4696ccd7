"""Outputs: where the records go besides the screen (databases, metrics for servers that watch
the monitor), fed by the pipeline and never feeding it."""
