"""GB/T 28181 upward: the cascade to city and province platforms (``service``: REGISTER, keepalive,
Catalog, INVITE answered from the live hub; ``sender``: PS over RTP from a hub)."""
