"""mgs-monitor: live Mouse Grimace Scale monitoring from cameras."""

__version__ = "0.1.0"
