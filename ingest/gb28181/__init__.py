"""GB/T 28181 device access: the SIP stack (``sip/``), MANSCDP bodies, the registrar,
keepalives, Catalog/DeviceInfo/DeviceStatus queries, and channels becoming cameras.

Media (INVITE sessions, PS over RTP) and cascade build on ``sip.SipEndpoint`` and on
``service.GbService`` (the running device server). PS itself: ``ps`` (demuxer) and
``psmux`` (muxer, for the cascade and the simulated device).
"""
