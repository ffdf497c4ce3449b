"""Every MP4 box read or written: box finding and building with named flags (``boxes``), parsing
fragmented segments (``read``), rewriting fragments for clips (``edit``), the live fMP4 writer
(``live``), and the codec rules they share: NAL units (``nal``), SPS fields (``sps``) and decode
times derived from presentation times (``decode_time``)."""
