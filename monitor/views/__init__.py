"""Views: what people look at, live or afterwards (dashboards, logger, reports, snapshots)."""
