"""Decoded pictures: snapshots, thumbnails, motion and transcode profiles, attached to sessions as taps."""
