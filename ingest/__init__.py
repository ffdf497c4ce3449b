"""Camera sessions, segmenter, spool, uploader and supervisor."""
