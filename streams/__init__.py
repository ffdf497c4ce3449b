"""The HTTP API, live and archive endpoints, the RTSP server and the web console."""
