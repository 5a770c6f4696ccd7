"""Outputs: where records go as they are made (CSV, bus, evidence, hook, database, metrics)."""
