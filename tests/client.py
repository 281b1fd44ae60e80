"""A small test client for the room WebSocket: connect, send commands, wait for events by type.

Every `timeout` here is nominal seconds, scaled by the tests' one factor (tests.timing).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from tests.timing import seconds


class RoomClient:
    """Reads frames in the background; flattens batches into one list of events."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.first: dict[str, Any] | None = None
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        self._next_id = 0

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> RoomClient:
        """Connect and send the auth frame. The token is the URL's `token` parameter (tests' shorthand): taken out
        before connecting, as a browser never puts it in the URL."""
        kwargs.setdefault("open_timeout", seconds(10))
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        token = next((value for key, value in query if key == "token"), None)
        bare = urlunsplit(parts._replace(query=urlencode([(key, value) for key, value in query if key != "token"])))
        connection = await websockets.connect(bare, max_size=2**22, **kwargs)
        if token is not None:
            await connection.send(orjson.dumps({"type": "auth", "token": token}).decode())
        client = cls(connection)
        await client.wait(lambda: client.first is not None or client.closed)
        return client

    @property
    def closed(self) -> bool:
        return self.connection.close_code is not None

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                frame = orjson.loads(raw)
                async with self._changed:
                    self.frames.append(frame)
                    if self.first is None:
                        self.first = frame
                    if frame["type"] in ("batch", "recovered"):
                        self.events.extend(frame["events"])
                    elif frame["type"] in ("ack", "error"):
                        self.replies.append(frame)
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def wait(self, predicate: Any, timeout: float = 5.0) -> None:
        """Return once `predicate()` is true (checked on every frame); fail after `timeout`, scaled."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), seconds(timeout))

    async def wait_event(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The first event of this type (and these field values) received so far or soon."""

        def found() -> dict[str, Any] | None:
            for item in self.events:
                if item["type"] == kind and all(item.get(key) == value for key, value in match.items()):
                    return item
            return None

        await self.wait(lambda: found() is not None, timeout)
        result = found()
        assert result is not None
        return result

    async def request(self, kind: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send a command with an id; return its ack or error."""
        self._next_id += 1
        request_id = f"req-{self._next_id}"
        await self.connection.send(orjson.dumps({"type": kind, "id": request_id, **fields}).decode())

        def reply() -> dict[str, Any] | None:
            return next((item for item in self.replies if item.get("id") == request_id), None)

        await self.wait(lambda: reply() is not None, timeout)
        result = reply()
        assert result is not None
        return result

    async def send_raw(self, raw: str | bytes) -> None:
        await self.connection.send(raw)

    async def wait_closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        await asyncio.wait_for(self.connection.wait_closed(), seconds(timeout))
        return self.connection.close_code, self.connection.close_reason

    async def close(self) -> None:
        await self.connection.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> RoomClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
