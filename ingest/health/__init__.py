"""Fleet health as ops staff see it: online rate, coverage and spool backlog."""
