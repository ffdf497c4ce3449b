"""Every MP4 box read or written: box building and named flags (``boxes``), parsing fragmented
segments (``read``), rewriting fragments for clips (``edit``), the live fMP4 writer (``live``), and
the NAL unit rules they share (``nal``)."""
