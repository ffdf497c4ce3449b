"""RTP: payload formats (RFC 6184 H.264 today), shared by the RTSP client, server and GB/T 28181."""
