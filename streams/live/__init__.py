"""Live view routes: WebRTC (WHEP), MSE, LL-HLS, the RTSP restream and the stream catalog."""
