"""The track each viewer's sender reads: it never yields; its first read says the viewer's transport is up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class ForwardTrack(MediaStreamTrack):
    """One viewer's copy of one of the host's tracks, as its RTCRtpSender sees it.

    The fan-out sends the viewer's packets itself (streaming.passthrough.RtpOutput), so the sender's
    own `_run_rtp` task must have nothing to do: `recv()` waits until the track stops, then ends the
    stream. aiortc's sender first reads once its DTLS transport is connected and its parameters are
    set: that first read calls `on_ready(track)`, when the fan-out may start sending to the viewer.
    """

    def __init__(self, kind: str, on_ready: Callable[[ForwardTrack], None]) -> None:
        super().__init__()
        self.kind = kind
        self.ready = False
        self._on_ready = on_ready
        self._ended: asyncio.Future[None] | None = None

    async def recv(self) -> None:  # type: ignore[override]  # never returns: the fan-out sends instead
        if not self.ready and self.readyState == "live":
            self.ready = True
            self._on_ready(self)
        if self.readyState == "live":
            self._ended = asyncio.get_running_loop().create_future()
            await self._ended
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)
