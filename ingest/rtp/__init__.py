"""RTP, shared by the RTSP client, our RTSP server and GB/T 28181 (PS over RTP).

- ``packet``: RTP packet parsing and building (header, CSRCs, extension, padding; bounded),
  and wrap-aware sequence/timestamp arithmetic.
- ``reorder``: a small reorder window for UDP, counting lost, late and reordered packets.
- ``framing``: RTP in a TCP stream: RTSP interleaved ``$`` frames (with the RTSP messages
  between them) and RFC 4571 length-prefixed frames.
- ``udp``: asyncio UDP receivers with an 8 MiB receive buffer, and even/odd RTP/RTCP port pairs.
- ``rtcp``: RTCP sender reports read (the camera's clock), receiver reports written.
- ``h264``: RFC 6184 FU-A packetising and the SDP ``fmtp`` line, for our RTSP server.

No module here knows about cameras, segments or storage: bytes and packets in, packets out.
"""
