"""Prometheus metrics of this process (summed across uvicorn workers when PROMETHEUS_MULTIPROC_DIR is set).

GET /metrics serves them to a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`; while
METRICS_TOKEN is unset it answers 404 (the numbers tell outsiders how busy the shop is).

The hub's pace (docs/protocol.md): `livecart_tick_lag_seconds`, how late each room flush ran, and
`livecart_tick_widest_seconds`, the widest tick of the rooms here. They are not per room: in
multiprocess mode prometheus_client cannot remove a label's series, so a per-room series would stay
for every room a process ever had; a widened room is named in the log ("room <id>: tick <n> ms").
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from server.errors import NotFound, Unauthorized
from server.http import node_of
from server.protocol import COMMANDS, ErrorCode

CONNECTIONS = Gauge("livecart_connections", "Open room WebSocket connections", multiprocess_mode="livesum")
ROOMS = Gauge("livecart_rooms", "Rooms with viewers on this server", multiprocess_mode="livesum")
EVENTS_IN = Counter("livecart_events_in_total", "Messages received from clients", ["type"])
EVENTS_PUBLISHED = Counter("livecart_events_published_total", "Room events received from the broker")
FRAMES_OUT = Counter("livecart_frames_out_total", "Batches handed to viewers (one frame each, fewer when merged)")
TICK_LAG = Histogram(
    "livecart_tick_lag_seconds",
    "How late each room flush ran after its tick was due (a busy process runs late; its rooms then widen their tick)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
TICK_WIDEST = Gauge(
    "livecart_tick_widest_seconds",
    "The widest tick of the rooms here (TICK_MS unless a room's fan-out did not fit; 0: no room)",
    multiprocess_mode="livemax",
)
CLOSED_SLOW = Counter("livecart_viewers_closed_slow_total", "Viewers closed because they could not keep up")
PROTOCOL_ERRORS = Counter("livecart_protocol_errors_total", "Client messages refused", ["code"])
VIDEO_ROOMS = Gauge(
    "livecart_video_rooms_live", "Rooms whose host is streaming video here", multiprocess_mode="livesum"
)
VIDEO_VIEWERS = Gauge(
    "livecart_video_viewers", "Video viewers (WHEP peers) on this server", multiprocess_mode="livesum"
)
VIDEO_PIPES = Gauge(
    "livecart_video_pipes",
    "Rooms piped to this server from the server holding their host (streaming.cascade)",
    multiprocess_mode="livesum",
)
REDIS_SECONDS = Histogram(
    "livecart_redis_seconds",
    "Redis call latency",
    ["op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
LEDGER_LAG = Histogram(
    "livecart_ledger_lag_seconds",
    "Per copy to PostgreSQL: from its oldest order change in Redis to the log row committed",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LEDGER_LAG_P99 = Gauge(
    "livecart_ledger_lag_p99_seconds",
    "p99 of the ledger lag over the last 10 s (the highest of the processes)",
    multiprocess_mode="livemax",
)
LEDGER_CHANGES = Counter("livecart_ledger_changes_total", "Order changes copied to PostgreSQL")
LEDGER_UNPROJECTED = Gauge(
    "livecart_ledger_unprojected_seconds",
    "How long the oldest copied order change has waited to be projected into orders (0: none waits)",
    multiprocess_mode="livemax",
)
LEDGER_DIVERGED = Counter(
    "livecart_ledger_diverged_total", "Order changes in Redis that contradict the record (Redis lost writes: repair)"
)
GROUPS_CLOSED = Counter(
    "livecart_groups_closed_total", "Groups of group-buy offers closed: filled, failed, cancelled", ["state"]
)
GROUP_REFUNDS = Counter(
    "livecart_group_refunds_total",
    "Failed groups' members refunded (made) or left for the next try (deferred)",
    ["outcome"],
)
SERVICE_MESSAGES = Counter(
    "livecart_service_messages_total", "Customer-service messages stored, by who wrote them: buyer, staff", ["side"]
)
BIDS = Counter(
    "livecart_bids_total",
    "Auction bids answered, by outcome: leading, outbid, raised (accepted); too_low, closed, barred (refused)",
    ["outcome"],
)
GIVEAWAY_ENTRIES = Counter("livecart_giveaway_entries_total", "Giveaway entries made")
SERVICE_NOTICES = Counter(
    "livecart_service_notices_total",
    "Answers sent to buyers by the messenger (sent), without an email or phone (no_destination), failed (retried)",
    ["outcome"],
)

# Every known label value starts at 0, so a fresh server exports these series and rate() over them works.
for _kind in COMMANDS:
    EVENTS_IN.labels(_kind)
for _code in ErrorCode:
    PROTOCOL_ERRORS.labels(_code.value)
for _state in ("filled", "failed", "cancelled"):
    GROUPS_CLOSED.labels(_state)
for _outcome in ("made", "deferred"):
    GROUP_REFUNDS.labels(_outcome)
for _side in ("buyer", "staff"):
    SERVICE_MESSAGES.labels(_side)
for _outcome in ("leading", "outbid", "raised", "too_low", "closed", "barred"):
    BIDS.labels(_outcome)
for _outcome in ("sent", "no_destination", "failed"):
    SERVICE_NOTICES.labels(_outcome)


@contextmanager
def redis_timer(op: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        REDIS_SECONDS.labels(op).observe(time.perf_counter() - start)


async def endpoint(request: Request) -> Response:
    """GET /metrics in the Prometheus text format, with `Authorization: Bearer <METRICS_TOKEN>`."""
    expected = node_of(request).settings.metrics_token
    if not expected:
        raise NotFound("/metrics is off: set METRICS_TOKEN and scrape with 'Authorization: Bearer <METRICS_TOKEN>'")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
