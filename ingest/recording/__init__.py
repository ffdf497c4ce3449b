"""Recording one camera stream: the session (pull), access units, segmenter, spool, uploader, backoff,
probe and status."""
