"""Auction benchmark: bids accepted per second and how stale the highest bid is on viewers' screens, in a full room,
against flash-sale purchases at the same offered rate and the room's own chat to the same viewers.

For each worker count in --workers (a fresh server each: `python -m server --workers W`, embedded Redis and
PostgreSQL, the demo shop) it fills the demo room with --viewers guest sockets, read by --clients load-generator
processes (loadtests.bench.auction_viewers), and runs two phases, --warmup then --seconds measured, over --rounds
(the order swapping each round, so that the machine's noise and the server's growing state hit both alike):

- **bid**: the host starts an auction of the demo mug (POST /api/merchants/demo/rooms/demo/auctions: sudden death,
  ending a second after the bidders stop, a step of 1 minor unit so that every accepted bid raises the price by
  exactly one) and --bidders signed-in members bid on it (POST /api/auctions/{a}/bids, a fresh Idempotency-Key,
  {"amount": the next minimum}, no `max`), each on a keep-alive connection of their own, one request at a time. The
  next minimum is the one of the newest card any answer carried (or a `too_low` refusal's `next_bid`): bidders that
  bid it at once race, the first wins (201 `leading`), the others are refused `too_low` and bid again. A bidder who
  leads waits until an answer shows a newer card (a person does not outbid themselves). --rate is the offered rate
  of requests/s over all bidders (a bidder takes the next slot when it is free); 0: each bidder as fast as its
  answers come.
- **purchase** (the baseline: the flash sale's hot path): a sale of the mug (--buyers units, limit 1) and as many
  keep-alive connections as there are bidders buying from it (POST /api/sales/{s}/purchases, {"quantity": 1}, a new
  signed-in buyer and key each time) at the same offered rate.

In both phases --chat chat messages/s go to the room from chatters' sockets (signed-in members, 5/s each), each text
stamped with its send time; --sampled viewers time each `chat.message` from that stamp: the room's own fan-out to the
same viewers, the baseline of the staleness. Every viewer keeps the highest `version` of the auction's card it was
shown; the sampled ones note when each card arrived. **Staleness** of an accepted bid at a viewer: from its answer
(and from just before its request was written) to the first card of a `version` at least the bid's reaching that
viewer; p50/p99 over the sampled viewers and the bids accepted in the measured seconds. The card is a latest-value
event: a room sends it once per tick (TICK_MS, 100 ms) with the newest version, so a viewer sees a fraction of the
versions, and the wait for the tick is part of the staleness as it is of the chat's latency.

Checked every phase (the run exits 1, saying what failed, otherwise): the auction closed with `bids` equal to the
201 answers (warm-up included) and its price equal to the highest accepted amount (= starting bid + bids - 1), every
accepted bid's version distinct and its amount rising with it, the auction's bids all in PostgreSQL (auction_bids),
every viewer shown the final card's version (none lost on a screen) and every measured bid's version reached by
every sampled viewer, no answer but 201 and `too_low`, no viewer closed; after a purchase phase, the sale's
invariant ok.

The server runs with the per-address limits of loopback lifted (loadtests.support.server.LOOPBACK_LIMITS), with
LIMIT_BIDS at 1000000/1 (a person's 20 bids per 10 s would refuse the bidders: here each bids hundreds of times a
second), CHAT_RATE_COUNT at 1000000 (as hub_bench and service_bench raise it) and AUCTION_MIN_SECONDS at 1 (the
smoke's auction lasts a few seconds; the full run's is longer than the default 10 s minimum anyway).

Per worker count and phase: requests/s (each round and the median), accepted (201) per second, request p50/p99,
staleness p50/p99 (from the answer and from the send), chat p50/p99, cards per second at a viewer, CPU per program
(server, Redis, PostgreSQL, the load generator, the rest of the machine). The ratios: bid p99 / purchase p99 and bid
requests/s / purchase requests/s (same offered rate), staleness p99 (from the send) / chat p99 (same phase), chat p99
during bids / during purchases. --json FILE writes every phase and the summary.

    python -m loadtests.bench.auction_bench --workers 1,2 --viewers 2000 --bidders 200 --rate 1000
    python -m loadtests.bench.auction_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import platform
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop

from loadtests.bench import chat, cpu, figures, purchase_bench, wsclient
from loadtests.support import smoke, table, tokens
from loadtests.support.server import HOST, ServerProcess, running
from loadtests.support.viewers import Viewers, raise_open_files
from server.protocol import Role

MERCHANT, ROOM, PRODUCT = "demo", "demo", "mug"
PRICE = 990  # purchase_bench's sale price, minor units
STARTING_BID = 100
PHASES = ("purchase", "bid")
SMOKE = {
    "workers": "1",
    "viewers": 100,
    "clients": 1,
    "sampled": 20,
    "bidders": 10,
    "rate": 100.0,
    "chat": 5.0,
    "seconds": 2.0,
    "warmup": 0.5,
    "rounds": 1,
    "buyers": 2_000,
    "timeout": 20.0,
}
# Every client is 127.0.0.1 and the bidders bid far faster than people: the bid and chat limits are raised as
# LOOPBACK_LIMITS raises the per-address ones; a short auction for the smoke (docstring).
ENV = {"LIMIT_BIDS": "1000000/1", "CHAT_RATE_COUNT": "1000000", "AUCTION_MIN_SECONDS": "1"}
END_MARGIN_SECONDS = 1.0  # the auction ends this long after the bidders stop: none is refused auction_closed
COLUMNS = (
    "workers",
    "phase",
    "offered/s",
    "requests/s (each round)",
    "requests/s",
    "accepted/s",
    "p50 ms",
    "p99 ms",
    "on screen p50 / p99 ms (from answer)",
    "on screen p50 / p99 ms (from send)",
    "chat p50 / p99 ms",
    "cards/s at a viewer",
    "lost",
    *cpu.COLUMNS,
)

JSON_HEADERS = "\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
PURCHASE_BODY = b'{"quantity":1}'


def request(path: str, token: str, body: bytes) -> bytes:
    """A POST with a fresh Idempotency-Key."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
        f"Idempotency-Key: {secrets.token_hex(8)}" + JSON_HEADERS % len(body)
    ).encode() + body


@dataclass
class Bid:
    """An accepted bid: who, how much, the card's version it made, when it was sent and answered (ms since the
    epoch), and whether it was sent in the measured seconds."""

    bidder: int
    amount: int
    version: int
    sent_ms: float
    answered_ms: float
    measured: bool


@dataclass
class Storm:
    """What one phase's connections saw: the measured requests' latencies and answers; every accepted bid."""

    latencies: list[float] = field(default_factory=list)  # ms
    accepted_latencies: list[float] = field(default_factory=list)  # 201s
    refused_latencies: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)  # the measured ones
    answers_all: Counter[str] = field(default_factory=Counter)  # the warm-up's too
    bids: list[Bid] = field(default_factory=list)  # every 201 of the bid phase, the warm-up's too
    errors: list[str] = field(default_factory=list)
    sent: int = 0  # requests written in the measured seconds

    def answered(self, kind: str, status: int, latency: float, measured: bool) -> None:
        """A request answered (`kind`: its status and outcome or error code) after `latency` ms."""
        self.answers_all[kind] += 1
        if measured:
            self.sent += 1
            self.answers[kind] += 1
            self.latencies.append(latency)
            (self.accepted_latencies if status == 201 else self.refused_latencies).append(latency)


class Market:
    """What the bidders know of the auction from the answers: the newest card's version and the next minimum."""

    def __init__(self, card: dict[str, Any]) -> None:
        self.version = int(card["version"])
        self.next_bid = int(card["next_bid"])
        self.changed = asyncio.Event()

    def seen(self, card: dict[str, Any]) -> None:
        if int(card["version"]) > self.version:
            self.version = int(card["version"])
            self.next_bid = max(self.next_bid, int(card["next_bid"]))
            self.changed.set()
            self.changed = asyncio.Event()

    def too_low(self, next_bid: int | None) -> None:
        if next_bid is not None:
            self.next_bid = max(self.next_bid, next_bid)


class Pace:
    """The offered rate: a slot every 1/rate s, taken by whichever connection is free; rate 0: no pacing."""

    def __init__(self, rate: float, stop: asyncio.Event) -> None:
        self.rate = rate
        self.stop = stop
        self.slots: asyncio.Queue[bool] = asyncio.Queue()
        self.offered = 0  # slots made while measuring
        self.measuring = False

    async def run(self, connections: int) -> None:
        if not self.rate:
            return
        loop = asyncio.get_running_loop()
        start, made = loop.time(), 0
        while not self.stop.is_set():
            delay = start + made / self.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(min(delay, 0.05))
                continue
            self.slots.put_nowait(True)
            made += 1
            self.offered += self.measuring
        for _ in range(connections):
            self.slots.put_nowait(False)  # every connection waiting for a slot: stop

    async def take(self) -> bool:
        """Wait for a slot; False when the phase is over."""
        if not self.rate:
            return not self.stop.is_set()
        return await self.slots.get() and not self.stop.is_set()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head, body = await purchase_bench.read_answer(reader)
    return int(head[9:12]), body


def error_of(body: bytes) -> dict[str, Any]:
    try:
        found = orjson.loads(body).get("error")
    except ValueError:
        return {"code": body[:80].decode(errors="replace")}
    return found if isinstance(found, dict) else {"code": str(found)}


def next_bid_of(error: dict[str, Any]) -> int | None:
    """A too_low refusal's next minimum, wherever the error carries it."""
    for where in (error, error.get("details") or {}):
        if isinstance(where, dict) and isinstance(where.get("next_bid"), int):
            return int(where["next_bid"])
    return None


async def bidder(
    number: int,
    port: int,
    auction_id: str,
    token: str,
    market: Market,
    pace: Pace,
    storm: Storm,
    measuring: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """One bidder on a connection of their own: the next minimum, one request at a time, never over their own lead."""
    path = f"/api/auctions/{auction_id}/bids"
    leading = -1  # the version of the card in which this bidder took the lead
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while not stop.is_set():
            while leading >= market.version and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(market.changed.wait(), 0.1)
            if not await pace.take():
                break
            amount = market.next_bid
            measured = measuring.is_set()
            sent_ms = time.time() * 1000
            started = time.perf_counter()
            writer.write(request(path, token, b'{"amount":%d}' % amount))
            status, body = await read_answer(reader)
            latency = 1000 * (time.perf_counter() - started)
            answered_ms = time.time() * 1000
            if status in (200, 201):
                answer = orjson.loads(body)
                card = answer["auction"]
                market.seen(card)
                kind = f"{status} {answer.get('outcome')}"
                if status == 201:
                    storm.bids.append(Bid(number, amount, int(card["version"]), sent_ms, answered_ms, measured))
                    if answer.get("outcome") == "leading":
                        leading = int(card["version"])
            else:
                error = error_of(body)
                kind = f"{status} {error.get('code')}"
                if error.get("code") == "too_low":
                    market.too_low(next_bid_of(error))
            storm.answered(kind, status, latency, measured)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        storm.errors.append(f"bidder {number}: {exc!r}")
    finally:
        writer.close()


async def purchaser(
    port: int,
    sale_id: str,
    buyers: list[str],
    next_index: list[int],
    pace: Pace,
    storm: Storm,
    measuring: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """One keep-alive connection buying: the next buyer, a new key each time, one request at a time."""
    path = f"/api/sales/{sale_id}/purchases"
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while await pace.take():
            index = next_index[0] = next_index[0] + 1
            measured = measuring.is_set()
            started = time.perf_counter()
            writer.write(request(path, buyers[index % len(buyers)], PURCHASE_BODY))
            status, body = await read_answer(reader)
            latency = 1000 * (time.perf_counter() - started)
            kind = f"{status} held" if status == 201 else f"{status} {error_of(body).get('code')}"
            storm.answered(kind, status, latency, measured)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        storm.errors.append(f"purchaser: {exc!r}")
    finally:
        writer.close()


class Chatters:
    """The chatters' sockets (signed-in members) in the bench's process: they chat (chat.send) and read every frame."""

    def __init__(self, args: argparse.Namespace, server: ServerProcess) -> None:
        self.args = args
        self.server = server
        self.writers: list[asyncio.StreamWriter] = []
        self.readers: list[asyncio.Task[None]] = []
        self.closed: list[str] = []

    async def open(self) -> None:
        for index, token in enumerate(chat.chatter_tokens(self.server.secret, self.args.chat)):
            reader, writer = await wsclient.connect(HOST, self.server.port, f"/ws/rooms/{ROOM}", token)
            await wsclient.read_frame(reader)  # the snapshot
            self.writers.append(writer)
            self.readers.append(asyncio.create_task(self.drain(reader, writer, f"chatter{index}")))

    async def drain(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        """Read the socket's frames (unread, they would back up on the server) and answer its pings."""
        try:
            while True:
                opcode, payload = await wsclient.next_frame(reader, writer)
                if opcode == 0x8:
                    self.closed.append(f"{name}: {wsclient.close_code(payload)}")
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.append(f"{name}: connection lost")

    async def close(self) -> None:
        await wsclient.close(self.readers, self.writers)


def staleness(bids: list[Bid], arrivals: list[list[list[float]]]) -> tuple[list[float], list[float], int]:
    """For each measured bid and sampled viewer: the first arrival of a card of the bid's version or newer, minus
    the bid's answer and minus its send; and how many (viewer, bid) pairs never saw such a card."""
    measured = sorted((bid for bid in bids if bid.measured), key=lambda bid: bid.version)
    from_answer: list[float] = []
    from_send: list[float] = []
    unseen = 0
    for seen in arrivals:
        cards = sorted((int(version), arrived) for version, arrived in seen)
        first = [math.inf] * (len(cards) + 1)  # first[i]: the earliest arrival of cards[i:]
        for index in range(len(cards) - 1, -1, -1):
            first[index] = min(cards[index][1], first[index + 1])
        at = 0
        for bid in measured:
            while at < len(cards) and cards[at][0] < bid.version:
                at += 1
            arrived = first[at]
            if arrived == math.inf:
                unseen += 1
                continue
            from_answer.append(arrived - bid.answered_ms)
            from_send.append(arrived - bid.sent_ms)
    return from_answer, from_send, unseen


async def settle(server: ServerProcess, timeout: float) -> float:
    """Wait for a second in which the server's processes used under 0.3 of a core (the last phase's projection into
    PostgreSQL, its feeds): the seconds it took, or -1 when it did not come within `timeout`."""
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        tree = server.tree()
        before = purchase_bench.cpu_seconds(tree.web + tree.redis + tree.postgres)
        await asyncio.sleep(1)
        after = purchase_bench.cpu_seconds(list(before))
        if sum(after.get(pid, used) - used for pid, used in before.items()) < 0.3:
            return round(time.monotonic() - started, 1)
    return -1.0


async def start_auction(host: httpx.AsyncClient, seconds: float) -> dict[str, Any]:
    body = {
        "product_id": PRODUCT,
        "starting_bid": STARTING_BID,
        "duration_seconds": max(1, math.ceil(seconds)),
        "mode": "sudden_death",
        "increments": [[0, 1]],
        "unpaid": "host",
    }
    answer = await host.post(f"/api/merchants/{MERCHANT}/rooms/{ROOM}/auctions", json=body)
    if answer.status_code != 201:
        raise RuntimeError(f"POST …/rooms/{ROOM}/auctions {body}: {answer.status_code} {answer.text[:500]}")
    card: dict[str, Any] = answer.json()
    found: dict[str, Any] = card.get("auction", card)
    return found


async def create_sale(host: httpx.AsyncClient, units: int) -> str:
    body = {
        "product_id": PRODUCT,
        "price": PRICE,
        "quantity": units,
        "per_user_limit": 1,
        "starts_at": int(time.time() * 1000),
        "duration_seconds": 3600,
    }
    answer = await host.post(f"/api/merchants/{MERCHANT}/rooms/{ROOM}/sales", json=body)
    if answer.status_code != 201:
        raise RuntimeError(f"POST …/rooms/{ROOM}/sales {body}: {answer.status_code} {answer.text[:500]}")
    return str(answer.json()["id"])


async def closed_card(api: httpx.AsyncClient, auction_id: str, timeout: float) -> dict[str, Any]:
    """The auction's card once it has closed and its version has stood still for a second (the close and the award
    published), or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    card: dict[str, Any] = {}
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        answer = await api.get(f"/api/auctions/{auction_id}")
        answer.raise_for_status()
        newer = answer.json()
        newer = newer.get("auction", newer) if "version" not in newer else newer
        if not card or newer["version"] != card["version"]:
            still_since = time.monotonic()
        card = newer
        if card["state"] != "open" and time.monotonic() - still_since >= 1.0:
            break
        await asyncio.sleep(0.1)
    return card


async def recorded_bids(server: ServerProcess, auction_id: str, expected: int, timeout: float) -> dict[str, Any]:
    """The auction's bids in PostgreSQL (auction_bids), once they are `expected` or after `timeout` seconds."""
    database = await asyncpg.connect(server.database_url)
    started = time.monotonic()
    try:
        while True:
            row = await database.fetchrow(
                "SELECT count(*) AS bids, coalesce(max(amount), 0) AS highest, count(DISTINCT seq) AS seqs "
                "FROM auction_bids WHERE auction_id = $1",
                auction_id,
            )
            assert row is not None
            if row["bids"] >= expected or time.monotonic() - started > timeout:
                return {**dict(row), "after_s": round(time.monotonic() - started, 1)}
            await asyncio.sleep(0.2)
    finally:
        await database.close()


async def run_phase(
    args: argparse.Namespace,
    server: ServerProcess,
    viewers: Viewers,
    chatters: Chatters,
    host: httpx.AsyncClient,
    name: str,
    bidder_tokens: list[str],
    buyer_tokens: list[str],
) -> dict[str, Any]:
    """One phase: --warmup then --seconds of bids (or purchases) at --rate and chat at --chat; its figures and
    checks."""
    storm, stop, measuring = Storm(), asyncio.Event(), asyncio.Event()
    pace = Pace(args.rate, stop)
    connections = len(bidder_tokens)
    card: dict[str, Any] = {}
    sale_id = ""
    if name == "bid":
        card = await start_auction(host, args.warmup + args.seconds + END_MARGIN_SECONDS)
        await viewers.tell(b"watch " + card["id"].encode())
        market = Market(card)
        workers = [
            asyncio.create_task(bidder(number, server.port, card["id"], token, market, pace, storm, measuring, stop))
            for number, token in enumerate(bidder_tokens)
        ]
    else:
        sale_id = await create_sale(host, args.buyers)
        await viewers.tell(b"watch none")
        next_index = [0]
        workers = [
            asyncio.create_task(purchaser(server.port, sale_id, buyer_tokens, next_index, pace, storm, measuring, stop))
            for _ in range(connections)
        ]
    pacing = asyncio.create_task(pace.run(connections))
    stamps: list[float] = []
    chatting = asyncio.create_task(chat.send(chatters.writers, args.chat, stop, stamps))
    await asyncio.sleep(args.warmup)
    meter = cpu.Meter.start(server, [os.getpid(), *viewers.pids])
    since_ms = round(time.time() * 1000, 1)
    measuring.set()
    await viewers.tell(b"measure %.1f" % since_ms)  # the chat stamped from since_ms on is timed
    pace.measuring = True
    started = time.monotonic()
    await asyncio.sleep(args.seconds)
    measuring.clear()
    pace.measuring = False
    until_ms = round(time.time() * 1000, 1)
    elapsed = time.monotonic() - started
    cpu_percent = meter.percent(elapsed)
    stop.set()
    await pacing
    await chatting
    chat_sent = sum(since_ms <= stamp < until_ms for stamp in stamps)
    await asyncio.gather(*workers)
    checks: dict[str, Any] = {}
    if name == "bid":
        final = await closed_card(host, card["id"], args.timeout)
        await asyncio.sleep(0.5)  # the last tick's card on its way to the viewers
        reports = await viewers.report(b"report %.1f" % until_ms, 120)
        checks = audit_auction(storm, final, reports)
        checks["recorded"] = await recorded_bids(server, card["id"], int(final.get("bids") or 0), args.timeout)
        checks["recorded_ok"] = checks["recorded"]["bids"] == checks["recorded"]["seqs"] == final.get(
            "bids"
        ) and checks["recorded"]["highest"] == (final.get("price") or 0)
    else:
        await asyncio.sleep(0.5)
        reports = await viewers.report(b"report %.1f" % until_ms, 120)
        audit = (await host.get(f"/api/merchants/{MERCHANT}/sales/{sale_id}/invariant")).json()
        checks = {"invariant": audit, "invariant_ok": bool(audit.get("ok"))}
    settled = await settle(server, args.timeout)

    chat_ms = [value for report in reports for value in report["chat_ms"]]
    from_answer, from_send, unseen = staleness(storm.bids, [seen for r in reports for seen in r["arrivals"]])
    accepted = sum(count for kind, count in storm.answers.items() if kind.startswith("201"))
    unexpected = {
        kind: count
        for kind, count in storm.answers_all.items()
        if not kind.startswith("201") and kind not in ("409 too_low",)
    }
    sampled = sum(report["sampled"] for report in reports)
    viewers_in = max(1, sum(report["connected"] for report in reports))
    cards_per_s = round(sum(report["cards"] for report in reports) / viewers_in / (elapsed + args.warmup), 1)
    return {
        "phase": name,
        "auction_id": card.get("id"),
        "sale_id": sale_id or None,
        "seconds": round(elapsed, 1),
        "offered_per_s": round(pace.offered / elapsed) if args.rate else None,
        "requests": storm.sent,
        "requests_per_s": round(storm.sent / elapsed),
        "accepted": accepted,
        "accepted_per_s": round(accepted / elapsed),
        "answers": dict(storm.answers.most_common()),
        "answers_all": dict(storm.answers_all.most_common()),
        "unexpected_answers": unexpected,
        "connection_errors": storm.errors[:10],
        "p50_ms": figures.ms(storm.latencies, 0.50),
        "p99_ms": figures.ms(storm.latencies, 0.99),
        "accepted_p99_ms": figures.ms(storm.accepted_latencies, 0.99),
        "refused_p99_ms": figures.ms(storm.refused_latencies, 0.99),
        "stale_answer_p50_ms": figures.ms(from_answer, 0.50),
        "stale_answer_p99_ms": figures.ms(from_answer, 0.99),
        "stale_send_p50_ms": figures.ms(from_send, 0.50),
        "stale_send_p99_ms": figures.ms(from_send, 0.99),
        "stale_send_max_ms": round(max(from_send), 1) if from_send else None,
        "stale_samples": len(from_send),
        "unseen": unseen,
        "chat_sent": chat_sent,
        "chat_samples": len(chat_ms),
        "chat_expected": chat_sent * sampled,
        "chat_p50_ms": figures.ms(chat_ms, 0.50),
        "chat_p99_ms": figures.ms(chat_ms, 0.99),
        "cards_per_s_at_viewer": cards_per_s if name == "bid" else None,
        "out_of_order": sum(report["out_of_order"] for report in reports),
        "viewer_frames_per_s": round(sum(report["frames"] for report in reports) / elapsed),
        "viewers_closed": sum(report["closed"] for report in reports),
        "settled_s": settled,
        **checks,
        **cpu_percent,
    }


def audit_auction(storm: Storm, final: dict[str, Any], reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The auction after its close against the bids answered 201, and what every viewer was last shown."""
    bids = sorted(storm.bids, key=lambda bid: bid.version)
    versions = [bid.version for bid in bids]
    amounts = [bid.amount for bid in bids]
    highest = max(bids, key=lambda bid: bid.amount) if bids else None
    shown: Counter[int] = Counter()
    for report in reports:
        shown.update({int(version): count for version, count in report["highest"].items()})
    connected = sum(report["connected"] for report in reports)
    behind = sum(count for version, count in shown.items() if version != final.get("version"))
    return {
        "final": {key: final.get(key) for key in ("state", "price", "bids", "version", "leader", "winner", "award")},
        "accepted_all": len(bids),
        "highest_amount": highest.amount if highest else None,
        "highest_bidder": highest.bidder if highest else None,
        "bids_ok": final.get("bids") == len(bids),
        "price_ok": highest is not None and final.get("price") == highest.amount == STARTING_BID + len(bids) - 1,
        "order_ok": len(set(versions)) == len(versions) and all(a < b for a, b in itertools.pairwise(amounts)),
        "closed_ok": final.get("state") not in (None, "open"),
        "viewers_shown": {str(version): count for version, count in sorted(shown.items())},
        "viewers_behind": behind + max(0, connected - sum(shown.values())),
    }


async def run_server(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """A fresh server with W workers, the room filled, then the rounds of both phases; every phase."""
    phases: list[dict[str, Any]] = []
    with running(workers=workers, env=ENV) as server:
        host_token = tokens.staff(server.secret, MERCHANT, Role.HOST, "Bench Host")
        bidder_tokens = [tokens.buyer(server.secret, f"u_bidder{i}", f"Bidder {i}") for i in range(args.bidders)]
        buyer_tokens = [tokens.buyer(server.secret, f"b{i}") for i in range(args.buyers)]
        chatters = Chatters(args, server)
        guests = args.viewers - chat.chatters(args.chat)
        viewers = await Viewers.start("loadtests.bench.auction_viewers", server, ROOM, guests, args.clients,
                                      args.sampled)  # fmt: skip
        headers = {"Authorization": f"Bearer {host_token}"}
        try:
            await chatters.open()
            print(f"{workers} worker(s): {viewers.connected + len(chatters.writers):,} sockets in the room in "
                  f"{viewers.seconds:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
            await asyncio.sleep(1)
            async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as host:
                for number in range(1, args.rounds + 1):
                    for name in PHASES if number % 2 else tuple(reversed(PHASES)):
                        phase = await run_phase(
                            args, server, viewers, chatters, host, name, bidder_tokens, buyer_tokens
                        )
                        phases.append({"workers": workers, "round": number, **phase})
                        print(
                            f"{workers} worker(s), round {number}/{args.rounds}, {name}: {phase['requests_per_s']:,} "
                            f"requests/s, {phase['accepted_per_s']:,} accepted/s, p99 {phase['p99_ms']} ms, "
                            f"chat p99 {phase['chat_p99_ms']} ms"
                            + (
                                f", on screen p99 {phase['stale_send_p99_ms']} ms from send, bids "
                                f"{phase['final']['bids']} of {phase['accepted_all']} accepted"
                                if name == "bid"
                                else ""
                            )
                            + f", others CPU {phase['others_cpu_percent']}%",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            await viewers.quit()
            await chatters.close()
    return {
        "workers": workers,
        "guests_connected": viewers.connected,
        "connect_seconds": round(viewers.seconds, 1),
        "closed": chatters.closed,
        "phases": phases,
    }


FIGURES = (
    "offered_per_s", "requests_per_s", "accepted_per_s", "p50_ms", "p99_ms", "accepted_p99_ms", "refused_p99_ms",
    "stale_answer_p50_ms", "stale_answer_p99_ms", "stale_send_p50_ms", "stale_send_p99_ms", "chat_p50_ms",
    "chat_p99_ms", "cards_per_s_at_viewer", *(f"{program}_cpu_percent" for program in cpu.PROGRAMS),
)  # fmt: skip


def summarize(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per worker count and phase, over the rounds: medians of rates, latencies and CPU, each round's rate and p99,
    the longest staleness, sums of the counts; and per worker count the ratios (of the medians, and each round's)."""
    lines = []
    for workers in sorted({phase["workers"] for phase in phases}):
        mine = {name: [p for p in phases if p["workers"] == workers and p["phase"] == name] for name in PHASES}
        for name in PHASES:
            line: dict[str, Any] = {"workers": workers, "phase": name, "rounds": len(mine[name])}
            for figure in FIGURES:
                line[figure] = figures.median([phase[figure] for phase in mine[name]])
            line["requests_per_s_each"] = [phase["requests_per_s"] for phase in mine[name]]
            line["p99_ms_each"] = [phase["p99_ms"] for phase in mine[name]]
            line["stale_send_max_ms"] = max((p["stale_send_max_ms"] or 0 for p in mine[name]), default=None)
            for figure in ("requests", "accepted", "unseen", "out_of_order", "viewers_closed", "chat_samples",
                           "chat_expected", "stale_samples"):  # fmt: skip
                line[figure] = sum(phase[figure] for phase in mine[name])
            line["lost"] = sum(lost(phase) for phase in mine[name]) if name == "bid" else None
            answers: Counter[str] = Counter()
            for phase in mine[name]:
                answers.update(phase["answers"])
            line["answers"] = dict(answers.most_common())
            lines.append(line)
        purchase, bid = lines[-2], lines[-1]
        by_round = {(p["round"], p["phase"]): p for p in phases if p["workers"] == workers}
        rounds = sorted({p["round"] for p in phases if p["workers"] == workers})
        bid["ratios"] = {
            "bid_p99_over_purchase_p99": figures.ratio(bid["p99_ms"], purchase["p99_ms"]),
            "bid_rate_over_purchase_rate": figures.ratio(bid["requests_per_s"], purchase["requests_per_s"]),
            "stale_p99_over_chat_p99": figures.ratio(bid["stale_send_p99_ms"], bid["chat_p99_ms"]),
            "chat_during_bids_over_purchases": figures.ratio(bid["chat_p99_ms"], purchase["chat_p99_ms"]),
            "each": [
                {
                    "bid_p99_over_purchase_p99": figures.ratio(
                        by_round[r, "bid"]["p99_ms"], by_round[r, "purchase"]["p99_ms"]
                    ),
                    "bid_rate_over_purchase_rate": figures.ratio(
                        by_round[r, "bid"]["requests_per_s"], by_round[r, "purchase"]["requests_per_s"]
                    ),
                    "stale_p99_over_chat_p99": figures.ratio(
                        by_round[r, "bid"]["stale_send_p99_ms"], by_round[r, "bid"]["chat_p99_ms"]
                    ),
                    "chat_during_bids_over_purchases": figures.ratio(
                        by_round[r, "bid"]["chat_p99_ms"], by_round[r, "purchase"]["chat_p99_ms"]
                    ),
                }
                for r in rounds
            ],
        }
    return lines


def lost(phase: dict[str, Any]) -> int:
    """Accepted bids missing from the auction's count or from PostgreSQL, and viewers not shown the final card."""
    final_bids = int(phase["final"].get("bids") or 0)
    missing: int = abs(phase["accepted_all"] - final_bids) + max(0, final_bids - int(phase["recorded"]["bids"]))
    return missing + int(phase["viewers_behind"])


def failures(result: dict[str, Any]) -> list[str]:
    """What went wrong: a bid lost or miscounted, a price that is not the highest bid, a viewer not shown the final
    card, an answer other than 201 or too_low, a socket closed, an invariant not ok, nothing measured."""
    found = []
    for server in result["servers"]:
        if server["closed"]:
            found.append(f"{server['workers']} worker(s): the chatters' sockets closed: {server['closed']}")
        for phase in server["phases"]:
            where = f"{phase['workers']} worker(s), round {phase['round']}, {phase['phase']}"
            if phase["unexpected_answers"]:
                found.append(f"{where}: unexpected answers {phase['unexpected_answers']}")
            if phase["connection_errors"]:
                found.append(f"{where}: connections failed: {phase['connection_errors']}")
            if phase["viewers_closed"]:
                found.append(f"{where}: {phase['viewers_closed']} viewer(s) closed")
            if not phase["chat_samples"]:
                found.append(f"{where}: no chat message timed")
            if not phase["accepted"]:
                found.append(f"{where}: nothing accepted in the measured seconds")
            if phase["phase"] == "purchase":
                if not phase["invariant_ok"]:
                    found.append(f"{where}: the sale's invariant is not ok: {phase['invariant']}")
                continue
            final = phase["final"]
            auction = f"{where} (auction {phase['auction_id']})"
            if not phase["closed_ok"]:
                found.append(f"{auction}: not closed within {result['timeout']:g} s: {final}")
            if not phase["bids_ok"]:
                found.append(
                    f"{auction}: {phase['accepted_all']} bids answered 201, the auction counts {final['bids']}"
                )
            if not phase["price_ok"]:
                found.append(f"{auction}: price {final['price']}, the highest accepted bid {phase['highest_amount']} "
                             f"({phase['accepted_all']} accepted from {STARTING_BID} by 1)")  # fmt: skip
            if not phase["order_ok"]:
                found.append(f"{auction}: two accepted bids with one version, or amounts not rising with the version")
            if not phase["recorded_ok"]:
                found.append(f"{auction}: PostgreSQL has {phase['recorded']} after {result['timeout']:g} s, the "
                             f"auction {final['bids']} bids up to {final['price']}")  # fmt: skip
            if phase["viewers_behind"]:
                found.append(f"{auction}: {phase['viewers_behind']} viewer(s) not shown the final card (version "
                             f"{final['version']}); highest versions shown: {phase['viewers_shown']}")  # fmt: skip
            if phase["unseen"]:
                found.append(f"{auction}: {phase['unseen']} (sampled viewer, measured bid) pairs never shown the bid")
    return found


def report(result: dict[str, Any]) -> str:
    """The table (a row per worker count and phase), the ratios, the answers, the checks, the command, the machine."""

    def pair(low: float | None, high: float | None) -> str | None:
        return None if low is None else f"{table.cell(low)} / {table.cell(high)}"

    rows = [
        [
            line["workers"],
            "purchase (baseline)" if line["phase"] == "purchase" else "bid",
            line["offered_per_s"] if line["offered_per_s"] is not None else "as fast as answered",
            " · ".join(f"{rate:,}" for rate in line["requests_per_s_each"]),
            line["requests_per_s"],
            line["accepted_per_s"],
            line["p50_ms"],
            line["p99_ms"],
            pair(line["stale_answer_p50_ms"], line["stale_answer_p99_ms"]),
            pair(line["stale_send_p50_ms"], line["stale_send_p99_ms"]),
            pair(line["chat_p50_ms"], line["chat_p99_ms"]),
            line["cards_per_s_at_viewer"],
            line["lost"],
            *(line[f"{program}_cpu_percent"] for program in cpu.PROGRAMS),
        ]
        for line in result["summary"]
    ]
    lines = [table.markdown(COLUMNS, rows), ""]

    def x(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}x"

    def each(ratios: list[dict[str, Any]], name: str) -> str:
        return ", ".join("n/a" if r[name] is None else f"{r[name]:.2f}" for r in ratios)

    same = "same offered rate" if result["rate"] else "same connections, as fast as answered"
    for line in result["summary"]:
        if line["phase"] != "bid":
            continue
        ratios, workers = line["ratios"], line["workers"]
        for name, label in (
            ("bid_p99_over_purchase_p99", f"bid p99 / purchase p99 ({same})"),
            ("bid_rate_over_purchase_rate", "bid requests/s / purchase requests/s"),
            ("stale_p99_over_chat_p99", "on-screen p99 from send / chat p99 (same phase)"),
            ("chat_during_bids_over_purchases", "chat p99 during bids / during purchases"),
        ):
            lines.append(f"ratio {label}, {workers} worker(s): {x(ratios[name])} (each round: "
                         f"{each(ratios['each'], name)})")  # fmt: skip
    for line in result["summary"]:
        answers = ", ".join(f"{kind} {count:,}" for kind, count in line["answers"].items()) or "none"
        lines.append(
            f"{line['workers']} worker(s), {line['phase']}: answers {answers}; p99 of 201s "
            f"{table.cell(line['accepted_p99_ms'])} ms, of refusals {table.cell(line['refused_p99_ms'])} ms"
            + (
                f"; on screen: {line['stale_samples']:,} (viewer, bid) pairs timed, longest "
                f"{table.cell(line['stale_send_max_ms'])} ms from send, {line['out_of_order']} cards out of order"
                if line["phase"] == "bid"
                else ""
            )
        )
    for server in result["servers"]:
        for phase in server["phases"]:
            if phase["phase"] != "bid":
                continue
            final = phase["final"]
            lines.append(
                f"{phase['workers']} worker(s), round {phase['round']}: auction {phase['auction_id']} "
                f"{final['state']}, {final['bids']} bids ({phase['accepted_all']} answered 201), "
                f"price {final['price']} (highest accepted {phase['highest_amount']}), version {final['version']} "
                "shown to "
                f"{phase['viewers_shown'].get(str(final['version']), 0):,} viewers; PostgreSQL "
                f"{phase['recorded']['bids']} bids up to {phase['recorded']['highest']} "
                f"({phase['recorded']['after_s']} s after the close)"
            )
    chat_samples = sum(line["chat_samples"] for line in result["summary"])
    chat_expected = sum(line["chat_expected"] for line in result["summary"])
    lines.append(
        f"room: {', '.join(str(s['guests_connected']) for s in result['servers'])} guests + {result['chatters']} "
        f"chatters; {result['bidders']} bidders, one connection each (purchases: as many connections); chat "
        f"{result['chat']:g}/s, timed at {chat_samples:,} of {chat_expected:,} expected deliveries"
    )
    problems = failures(result)
    lines.extend(f"FAILED: {problem}" for problem in problems)
    if not problems:
        lines.append(
            "checks: 0 lost (every bid answered 201 counted by the auction and in PostgreSQL, the final price the "
            "highest accepted bid, every viewer shown the final card), every invariant ok, no socket closed"
        )
    lines.append(f"command: {result['command']}")
    lines.append(f"machine: {result['machine']}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers = [await run_server(args, workers) for workers in args.worker_counts]
    return {
        "command": "python -m loadtests.bench.auction_bench " + " ".join(args.argv),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, {platform.platform()}",
        "viewers": args.viewers,
        "bidders": args.bidders,
        "rate": args.rate,
        "chat": args.chat,
        "chatters": chat.chatters(args.chat),
        "timeout": args.timeout,
        "summary": summarize([phase for server in servers for phase in server["phases"]]),
        "servers": servers,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts, comma-separated: a server each")
    parser.add_argument("--viewers", type=int, default=2000, help="room sockets in all (the chatters included)")
    parser.add_argument("--bidders", type=int, default=200, help="signed-in bidders (purchases: as many connections)")
    parser.add_argument("--rate", type=float, default=1000, help="offered requests/s; 0: as fast as answers come")
    parser.add_argument("--chat", type=float, default=20, help="chat messages/s from the chatters' sockets")
    parser.add_argument("--seconds", type=float, default=15, help="each phase's measured seconds")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of each phase before measuring")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the two phases, the order swapping")
    parser.add_argument("--sampled", type=int, default=100, help="viewers that time the chat and every card")
    parser.add_argument("--clients", type=int, default=2, help="viewer processes of the load generator")
    parser.add_argument(
        "--buyers",
        type=int,
        help="distinct buyers of a purchase phase, in turn (limit 1 each; default: enough for every attempt, "
        "--rate x the phase's seconds and a tenth more, or 300,000 at --rate 0)",
    )
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for a close, a record, a settle")
    parser.add_argument("--json", type=Path, help="also write every phase and the summary here, as JSON")
    args = smoke.parse(parser, SMOKE, argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.buyers is None:
        args.buyers = math.ceil(1.1 * args.rate * (args.warmup + args.seconds)) + 100 if args.rate else 300_000
    try:
        args.worker_counts = [int(count) for count in str(args.workers).split(",")]
    except ValueError:
        parser.error("--workers takes worker counts, comma-separated: 1,2")
    if args.viewers <= chat.chatters(args.chat) or args.bidders < 2 or args.chat <= 0 or args.rate < 0:
        parser.error("--viewers must hold the chatters and guests; --bidders >= 2; --chat > 0; --rate >= 0")
    raise_open_files()
    result = uvloop.run(run(args))
    smoke.emit(result, args.json, report, failures)


if __name__ == "__main__":
    main()
