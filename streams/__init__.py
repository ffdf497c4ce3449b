"""The HTTP API, live and archive endpoints, the RTSP server and the web console.

Live view, RTSP and simulated cameras (imported from their modules, so ``import streams`` stays light):

- ``streams.rtsp.server``: ``RtspServer``, ``AccessUnitSource``, ``SessionInfo``
- ``streams.demo.simulated``: ``start_simulated_cameras``, ``SimulatedCameras``, ``StreamSpec``, ``LoopSource``
- ``streams.live.webrtc``: WHEP (WebRTC passthrough from the live hub)
- ``streams.live.mse``: fMP4 over WebSocket; ``streams.live.catalog``: ``GET /api/streams``
- ``streams.background``: ``BackgroundLoop`` (an event loop in a thread, for sync callers)

The live hub, fan-out and H.264 helpers are in ``ingest`` (``ingest.live.hub``,
``ingest.live.fanout``, ``storage.mp4.nal``), next to the session they tap.
"""
