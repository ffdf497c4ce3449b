"""A small reorder window for RTP over UDP, counting what never arrives.

UDP may reorder and lose packets. Video needs packets in sequence order to rebuild NAL
units, but must not wait long: a camera is live. :class:`ReorderBuffer` holds at most
``window`` packets. A packet that fills the next expected sequence number is released at
once, together with any run that follows it. When the window is full, the oldest held
packet is released and the missing numbers before it are counted as lost (they are given
up: a later arrival is a late duplicate, counted and dropped).

The depacketisers do not trust the buffer to be gap-free: they check sequence continuity
themselves, so the same code serves TCP (no reordering, no loss) and UDP.
"""

from __future__ import annotations

from ingest.rtp.packet import RtpPacket, seq_delta

DEFAULT_WINDOW = 32
# A jump this far (either way) is a new stream (a camera restart), not reordering.
_RESYNC = 3000


class ReorderBuffer:
    """Feed packets as they arrive; get them back in sequence order, losses counted."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError("a reorder window holds at least one packet")
        self.window = window
        self._next: int | None = None  # the sequence number to release next
        self._held: dict[int, RtpPacket] = {}
        self.received = 0
        self.lost = 0  # sequence numbers skipped for good
        self.late = 0  # arrived after being given up, or duplicated
        self.reordered = 0  # arrived out of order but in time
        self.resyncs = 0

    def push(self, packet: RtpPacket) -> list[RtpPacket]:
        """Take one packet; return those now releasable, in order (often just ``[packet]``)."""
        self.received += 1
        seq = packet.sequence
        if self._next is None:
            self._next = seq
        d = seq_delta(self._next, seq)
        if d == 0 and not self._held:
            self._next = (seq + 1) & 0xFFFF
            return [packet]  # the common case: in order, nothing held
        if d < 0 or seq in self._held:
            if d < -_RESYNC:
                return self._resync(packet)
            self.late += 1
            return []
        if d > _RESYNC:
            return self._resync(packet)
        if d > 0:
            self.reordered += 1
        self._held[seq] = packet
        out = self._release_run()
        while len(self._held) >= self.window:
            out.extend(self._skip_to_oldest())
        return out

    def take_in_order(self, seq: int) -> bool:
        """The common case, without a packet object: if ``seq`` is the next one and nothing is held,
        count it as :meth:`push` would and return True (the caller passes the packet on itself);
        else return False and change nothing (the caller then calls :meth:`push`)."""
        if self._held or (self._next is not None and seq != self._next):
            return False
        self.received += 1
        self._next = (seq + 1) & 0xFFFF
        return True

    def flush(self) -> list[RtpPacket]:
        """Release everything held (end of stream), counting the holes as lost."""
        out: list[RtpPacket] = []
        while self._held:
            out.extend(self._skip_to_oldest())
        return out

    @property
    def held(self) -> int:
        return len(self._held)

    def _release_run(self) -> list[RtpPacket]:
        out: list[RtpPacket] = []
        assert self._next is not None
        nxt = self._next
        held = self._held
        while nxt in held:
            out.append(held.pop(nxt))
            nxt = (nxt + 1) & 0xFFFF
        self._next = nxt
        return out

    def _skip_to_oldest(self) -> list[RtpPacket]:
        assert self._next is not None
        base = self._next
        oldest = min(self._held, key=lambda s: seq_delta(base, s))
        self.lost += seq_delta(base, oldest)
        self._next = oldest
        return self._release_run()

    def _resync(self, packet: RtpPacket) -> list[RtpPacket]:
        self.resyncs += 1
        out = self.flush()
        self._next = (packet.sequence + 1) & 0xFFFF
        out.append(packet)
        return out
