"""Capture: cameras, streams, videos and image folders turned into sampled frames."""
