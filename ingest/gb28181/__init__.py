"""GB/T 28181: SIP device access and cascade (``sip/``), PS media (``ps``, ``psmux``) and media sessions."""
