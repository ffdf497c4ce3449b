"""The archive as investigators use it: timelines (runs and gaps), clip planning, retention and legal holds."""
