"""Views: what people read off the records afterwards (reports and pages), never on the scoring
path."""
