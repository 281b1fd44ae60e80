"""One room WebSocket of a locust user: reports every pushed event's lag to locust, tracks the room's sales,
sends commands and waits for their replies, and reconnects with `since`/`epoch` like a browser.

It runs on gevent (locust monkey-patches the standard library, so `websockets.sync.client` and its
reader thread become greenlets). Everything it measures goes to locust as request events of type
"WS", so locust's console, CSV and HTML reports show it:

- `connect` / `recover`: from opening the socket to its first frame (snapshot or recovered);
- `frame batch`: a frame's lag, from its server timestamp (the tick that built it) to its arrival;
- `event <type>`: each pushed event's lag, from its own server timestamp (when it happened) to its
  arrival: the push latency a viewer sees, tick wait included. Events replayed after a reconnect
  are not timed (they are history, not pushes);
- `<command>` (e.g. `chat.send`): a command's round trip, failed when the server answers `error`;
- `close <code>`: a failure each time the server closes the socket.

Lags compare the server's clock with this machine's: run the load generator on a machine whose
clock is in sync with the server's (on one machine they are the same clock).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import Any

import gevent
import orjson
from gevent.event import AsyncResult, Event
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

log = logging.getLogger("livecart.loadtest")

SALE_EVENTS = frozenset({"sale.created", "sale.started", "sale.sold_out", "sale.ended"})
STOCK_FIELDS = ("available", "held", "sold", "version")
NO_RECONNECT = range(4500, 5000)  # docs/protocol.md: do not reconnect with the same token


class RoomSocketError(Exception):
    """The socket could not be opened, or closed for good."""


class CommandRefused(Exception):
    """The server answered a command with `error`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


# What request() raises, each already reported to locust as a failure: callers may ignore them.
REPORTED = (CommandRefused, RoomSocketError, ConnectionClosed, gevent.Timeout, OSError)


def ws_url(base_url: str) -> str:
    """ws:// or wss:// for an http:// or https:// base URL."""
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://").rstrip("/")
    return "ws://" + base_url.removeprefix("http://").rstrip("/")


class RoomSocket:
    """A room connection with a reader greenlet; `open()` returns once the first frame arrived."""

    def __init__(self, environment: Any, base_url: str, room_id: str, token: str) -> None:
        self.environment = environment
        self.url = f"{ws_url(base_url)}/ws/rooms/{room_id}"
        self.token = token  # sent as the first frame, never in the URL
        self.offset = 0
        self.epoch = ""
        self.sales: dict[str, dict[str, Any]] = {}  # sale id -> public sale with its live stock
        self.close_code: int | None = None
        self._connection: Any = None
        self._first = Event()
        self._closing = False
        self._replies: dict[int, AsyncResult] = {}
        self._next_id = 0
        self._reader: gevent.Greenlet | None = None

    # --- the user's side ------------------------------------------------------------------

    def open(self, timeout: float = 15.0) -> None:
        self._reader = gevent.spawn(self._run)
        if not self._first.wait(timeout) or self._connection is None:
            self.close()
            raise RoomSocketError(f"no first frame from {self.url.split('?')[0]} (close code {self.close_code})")

    def close(self) -> None:
        self._closing = True
        connection = self._connection
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a socket that is already gone
                connection.close()
        if self._reader is not None and self._reader is not gevent.getcurrent():
            self._reader.kill(block=True, timeout=3)

    def send(self, kind: str, **fields: Any) -> None:
        """A command without an id: the server answers only if it fails."""
        connection = self._connection
        if connection is None:
            raise RoomSocketError("not connected")
        connection.send(orjson.dumps({"type": kind, **fields}).decode())

    def request(self, kind: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a command with an id and wait for its ack; its round trip is reported as `WS <kind>`."""
        self._next_id += 1
        request_id = self._next_id
        waiter: AsyncResult = AsyncResult()
        self._replies[request_id] = waiter
        started = time.perf_counter()
        try:
            self.send(kind, id=request_id, **fields)
            reply: dict[str, Any] = waiter.get(timeout=timeout)
        except REPORTED as problem:
            self._fire(kind, (time.perf_counter() - started) * 1000, 0, problem)
            raise
        finally:
            self._replies.pop(request_id, None)
        elapsed = (time.perf_counter() - started) * 1000
        if reply["type"] == "error":
            refused = CommandRefused(reply["code"], reply["message"])
            self._fire(kind, elapsed, 0, refused)
            raise refused
        self._fire(kind, elapsed, 0)
        return reply

    def buyable(self, skip: set[str]) -> dict[str, Any] | None:
        """A live sale with units left (by the latest stock seen), other than those in `skip`."""
        for sale in self.sales.values():
            if sale["id"] not in skip and sale["status"] == "live" and sale["available"] > 0:
                return sale
        return None

    # --- the reader greenlet --------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        while not self._closing:
            url = self.url + (f"?since={self.offset}&epoch={self.epoch}" if self.epoch else "")
            started = time.perf_counter()
            code: int | None = None
            try:
                with connect(
                    url,
                    compression=None,
                    open_timeout=10,
                    close_timeout=2,
                    ping_interval=None,
                    max_size=2**22,
                    proxy=None,
                ) as connection:
                    connection.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
                    self._connection = connection
                    for raw in connection:
                        self._frame(raw, started)
                        backoff = 0.5
                code = connection.close_code
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as problem:
                self._fire("connect", (time.perf_counter() - started) * 1000, 0, problem)
            finally:
                self._connection = None
                for waiter in self._replies.values():
                    waiter.set_exception(RoomSocketError("connection closed"))
            self.close_code = code
            if self._closing:
                return
            if code is not None:
                self._fire(f"close {code}", 0, 0, RoomSocketError(f"server closed the socket with {code}"))
                if code in NO_RECONNECT:
                    self._first.set()  # open() gives up
                    return
            gevent.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 10.0)

    def _frame(self, raw: str | bytes, started: float) -> None:
        now = time.time() * 1000
        frame = orjson.loads(raw)
        kind = frame.get("type")
        if kind == "batch":
            events = frame["events"]
            self._fire("frame batch", max(0.0, now - frame["ts"]), len(raw))
            share = len(raw) // max(1, len(events))
            for item in events:
                self._apply(item)
                self._fire(f"event {item['type']}", max(0.0, now - item["ts"]), share)
        elif kind in ("ack", "error"):
            waiter = self._replies.get(frame.get("id"))  # type: ignore[arg-type]
            if waiter is not None:
                waiter.set(frame)
            elif kind == "error":
                self._fire("error", 0, len(raw), CommandRefused(frame["code"], frame["message"]))
        elif kind == "snapshot":
            self.sales = {sale["id"]: sale for sale in frame.get("sales", [])}
            self.offset, self.epoch = frame["offset"], frame["epoch"]
            self._fire("connect", (time.perf_counter() - started) * 1000, len(raw))
            self._first.set()
        elif kind == "recovered":
            for item in frame["events"]:
                self._apply(item)
            self.offset, self.epoch = max(self.offset, frame["offset"]), frame["epoch"]
            self._fire("recover", (time.perf_counter() - started) * 1000, len(raw))
            self._first.set()

    def _apply(self, item: dict[str, Any]) -> None:
        """Keep the offset and the sales current (the rest of the room is of no use to a load test)."""
        offset = item.get("offset")
        if offset is not None:
            if offset <= self.offset:
                return  # already applied (docs/protocol.md: ignore what is not above the last offset)
            self.offset = offset
        kind = item["type"]
        if kind in SALE_EVENTS:
            sale = item["sale"]
            known = self.sales.get(sale["id"])
            if known is not None and known["version"] > sale["version"]:
                sale = {**sale, **{name: known[name] for name in STOCK_FIELDS}}
            self.sales[sale["id"]] = sale
        elif kind == "stock":
            known = self.sales.get(item["sale_id"])
            if known is not None and item["version"] > known["version"]:
                known.update({name: item[name] for name in STOCK_FIELDS})

    def _fire(self, name: str, response_time: float, length: int, exception: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=response_time,
            response_length=length,
            exception=exception,
            context={},
        )
