"""The HTTP API, live and archive endpoints, the RTSP server and the web console.

RTSP and simulated cameras (imported from their modules, so ``import streams`` stays light):

- ``streams.rtsp_server``: ``RtspServer``, ``AccessUnitSource``, ``SessionInfo``
- ``streams.fanout``: ``AccessUnitFanout`` (GOP cache + bounded per-subscriber queues)
- ``streams.h264``: ``AccessUnit``, Annex-B splitting, RFC 6184 payloads, ``sdp_fmtp``
- ``streams.simulated``: ``start_simulated_cameras``, ``SimulatedCameras``, ``StreamSpec``, ``LoopSource``
- ``streams.background``: ``BackgroundLoop`` (an event loop in a thread, for sync callers)
"""
