"""Sharing cameras between ingest workers: the lease keeper."""
