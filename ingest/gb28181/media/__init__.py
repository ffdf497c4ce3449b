"""GB/T 28181 media: INVITE sessions that record a channel (``session``), the RTP/PS receiver
(``receiver``), SDP offers (``sdp``), the device's own recordings (``records``: RecordInfo;
``playback``: s=Playback; ``backfill``: s=Download into our archive) and PTZ (``ptz``)."""
