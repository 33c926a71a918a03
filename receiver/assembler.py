"""Pairs the two views of each frame with their references, by sequence number.

The channel forwards views in order on one connection, so once a view of frame ``s``
arrives, no more views of frames before ``s`` will: such frames are final, with one view
or none. References travel on their own socket and may arrive earlier or later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

#: Frames this far behind the newest view are given up (references without data).
GIVE_UP_AFTER = 64


@dataclass
class PendingFrame:
    views: dict[int, Any] = field(default_factory=dict)
    refs: dict[int, Tensor] = field(default_factory=dict)
    closed: bool = False

    def ready(self) -> bool:
        complete = len(self.views) == 2 or (self.closed and self.views)
        return bool(complete) and all(v in self.refs for v in self.views)


class FrameAssembler:
    """Collects views and references; hands out frames that are ready to decode."""

    def __init__(self) -> None:
        self.pending: dict[int, PendingFrame] = {}
        self.newest = -1
        self.given_up = 0

    def add_view(
        self, seq: int, view: int, item: Any
    ) -> list[tuple[int, PendingFrame]]:
        self.pending.setdefault(seq, PendingFrame()).views[view] = item
        if seq > self.newest:
            for earlier, frame in self.pending.items():
                if earlier < seq:
                    frame.closed = True
            self.newest = seq
        return self._take_ready()

    def add_reference(
        self, seq: int, view: int, image: Tensor
    ) -> list[tuple[int, PendingFrame]]:
        self.pending.setdefault(seq, PendingFrame()).refs[view] = image
        return self._take_ready()

    def views_of(self, seq: int) -> dict[int, Any]:
        """The views of frame ``seq`` received so far (none once it was handed out)."""
        frame = self.pending.get(seq)
        return {} if frame is None else dict(frame.views)

    def waiting_for_references(self) -> bool:
        """True while some frame has a view but not its reference."""
        return any(v not in f.refs for f in self.pending.values() for v in f.views)

    def flush(self) -> list[tuple[int, PendingFrame]]:
        """At the end of the stream: every frame with a view is final."""
        for frame in self.pending.values():
            frame.closed = True
        ready = self._take_ready()
        self.given_up += sum(1 for f in self.pending.values() if f.views)
        self.pending.clear()
        return ready

    def _take_ready(self) -> list[tuple[int, PendingFrame]]:
        ready = sorted((s, f) for s, f in self.pending.items() if f.ready())
        for seq, _ in ready:
            del self.pending[seq]
        stale = [
            s
            for s, f in self.pending.items()
            if not f.views and s < self.newest - GIVE_UP_AFTER
        ]
        for seq in stale:
            del self.pending[seq]
        return ready
