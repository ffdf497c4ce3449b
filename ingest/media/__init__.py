"""Decoded pictures: snapshots, thumbnails, motion and transcode profiles, attached to sessions as taps.

They share one off-thread tap and decode loop (``packet_worker``: ``PacketWorker``, ``StreamDecoder``)
and one picture type and JPEG encoder (``jpeg``)."""
