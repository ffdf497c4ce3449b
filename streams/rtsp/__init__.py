"""The RTSP server (RFC 2326) used by the restream and the simulated cameras."""
