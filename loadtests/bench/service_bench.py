"""Customer-service benchmark: private message delivery in a busy room, against the room's own chat fan-out.

It starts one server (`python -m server --workers W`, embedded Redis and PostgreSQL, the demo shop) and fills
the demo room: --viewers room sockets in all, of which --staff are the shop's hosts (host tokens of `demo`),
--buyers are signed-in members (one socket each), a few are chatters (below) and the rest guests, read by
--clients load-generator
processes (loadtests.bench.service_viewers) that count every frame and every `service.*` event in it. Then it
alternates two phases, --seconds each, over --rounds (the order swapping each round, so that the machine's
noise hits both alike), after --warmup seconds of both kinds of traffic (not measured):

- **chat** (the baseline: the room's own fan-out): `chat.send` at --chat messages/s, each text stamped with
  its send time ("bench chat <ms>", on this machine's clock), and --sampled guests time each `chat.message`
  from that stamp to its arrival. The chat comes from chatters' sockets (signed-in members, not the bench's
  buyers), in turn, at most CHAT_PER_SOCKET messages/s each: the server closes a socket that sends more than
  20 commands in 2 s (4029, server/live/transport.py FLOOD_MESSAGES), so one socket cannot chat at 20/s;
- **private**: the same chat, plus --rate private messages/s through the REST API, questions and answers in
  turn: a question (POST /api/merchants/demo/messages, {text, room_id}, a fresh Idempotency-Key) from a
  random buyer, then an answer (POST /api/merchants/demo/service/threads/{t}/messages, a fresh key) from
  the first host to the thread of the buyer whose question was answered 201 longest ago and not answered
  yet. Each message's send time is noted just before its request is written; the `service.message` event
  is timed on the sockets it is for: every staff socket for a question, the buyer's socket for an answer
  (both also get an echo of their own, not timed). Delivery latency = arrival - send, on one clock.

After each phase the bench waits until every message answered 201 has reached its sockets, at most
--timeout seconds after its send: one that did not is **lost**. A `service.*` event on a guest's or a
chatter's socket, or on a buyer's socket for a thread that is not theirs, is **leaked**. Both must be 0: the
bench exits 1, saying what went wrong, otherwise (and when a message is refused or a socket is closed).

Per phase: chat latency p50/p99 (medians over the rounds, and each round's p99); in the private phase the
delivery latency p50/p99 of questions and of answers, the longest, the HTTP answer's latency p50/p99 of
each, the messages sent and answered 201 per second; lost, leaked; CPU per program (server, Redis,
PostgreSQL, the load generator, the rest of the machine) over the measured seconds. The ratios: private p99
/ chat p99 in the same phase (how a private message compares with the room's own fan-out), and chat p99
with private messages / without (what they cost the room). --json FILE writes every phase and the summary.

The server runs with the per-address limits of loopback lifted (loadtests.support.server.LOOPBACK_LIMITS:
every socket and request comes from 127.0.0.1) and, for the same reason, with the customer-service limits
raised: LIMIT_SERVICE_MESSAGES, LIMIT_SERVICE_ADDRESS and LIMIT_SERVICE_STAFF at 1000000/1 (a buyer's 10/60,
an address's 30/60 and a staff member's 120/60 would refuse most of 50 messages/s from one address), and
CHAT_RATE_COUNT at 1000000 (a member's 5 chat messages per 5 s, as hub_bench raises it). The
buyers send no delivery receipts: after SERVICE_NOTIFY_AFTER_MS (60 s, the default) the notice pass looks
for answers to notify, finds no email or phone and records `no_destination`, as it would for such buyers.

    python -m loadtests.bench.service_bench --rounds 3 --seconds 20
    python -m loadtests.bench.service_bench --smoke      # seconds, tiny: proves it runs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop

from loadtests.bench import chat, cpu, figures, purchase_bench, wsclient
from loadtests.support import smoke, table, tokens
from loadtests.support.server import HOST, ServerProcess, running
from loadtests.support.viewers import Viewers, raise_open_files
from server.protocol import Role

MERCHANT, ROOM = "demo", "demo"
PHASES = ("chat", "private")
SMOKE = {
    "viewers": 200,
    "buyers": 10,
    "rate": 10,
    "chat": 10,
    "seconds": 3,
    "warmup": 1,
    "rounds": 1,
    "clients": 1,
    "sampled": 50,
    "timeout": 5,
}
# Every client is 127.0.0.1: the customer-service limits (per buyer, per address, per staff member) are raised as
# LOOPBACK_LIMITS raises the others (docstring).
ENV = {
    "LIMIT_SERVICE_MESSAGES": "1000000/1",
    "LIMIT_SERVICE_ADDRESS": "1000000/1",
    "LIMIT_SERVICE_STAFF": "1000000/1",
    "CHAT_RATE_COUNT": "1000000",
}
SERVICE = b'"type":"service.'
COLUMNS = (
    "phase",
    "chat p50 ms",
    "chat p99 ms",
    "chat p99 ms (each round)",
    "private sent/s",
    "question p50 ms",
    "question p99 ms",
    "answer p50 ms",
    "answer p99 ms",
    "private max ms",
    "HTTP question p50 / p99 ms",
    "HTTP answer p50 / p99 ms",
    "sent (201)",
    "lost",
    "leaked",
    *cpu.COLUMNS,
)


@dataclass
class Sent:
    """One private message: what it was, when it was sent, its HTTP answer, and when it reached its sockets."""

    kind: str  # "question" or "answer"
    buyer: int
    at_ms: float = 0.0  # just before its request was written (ms since the epoch)
    status: int = 0  # its HTTP status (0: no answer: the connection failed)
    http_ms: float | None = None
    arrivals: dict[str, float] = field(default_factory=dict)  # addressed socket -> arrival (ms since the epoch)


@dataclass
class Phase:
    """What the bench's own sockets saw during one phase."""

    sent: dict[int, Sent] = field(default_factory=dict)  # by tag, the number in the message's text
    buyer_events: list[tuple[int, str]] = field(default_factory=list)  # (buyer, thread id) of each service.* event
    duplicates: int = 0  # a message's event twice on one socket
    echoes: int = 0  # the author's own message back on their socket (not timed)
    strays: int = 0  # a service.message whose text is not one of the bench's (or of an earlier phase)
    leaked_to_chatters: int = 0  # service.* events on a chatter's socket (nobody's buyer, no shop's staff)


class Bench:
    """The bench's sockets and state: the staff and buyer sockets, every buyer's thread, the current phase."""

    def __init__(self, args: argparse.Namespace, server: ServerProcess) -> None:
        self.args = args
        self.server = server
        self.host_token = tokens.staff(server.secret, MERCHANT, Role.HOST, "Bench Host")
        self.staff_tokens = [self.host_token] + [
            tokens.staff(server.secret, MERCHANT, Role.HOST, f"Bench Host {i}") for i in range(1, args.staff)
        ]
        self.buyer_tokens = [tokens.buyer(server.secret, f"u_bench{i}", f"Buyer {i}") for i in range(args.buyers)]
        self.chatter_tokens = chat.chatter_tokens(server.secret, args.chat)
        self.staff_names = [f"staff{i}" for i in range(args.staff)]
        self.thread_of: dict[int, str] = {}  # buyer -> their thread with the shop (from a 201)
        self.waiting: deque[int] = deque()  # buyers whose question was answered 201 and not yet by the staff
        self.phase = Phase()
        self.tag = 0
        self.closed: list[str] = []  # the bench's own sockets the server closed
        self.writers: list[asyncio.StreamWriter] = []
        self.chat_writers: list[asyncio.StreamWriter] = []
        self.listeners: list[asyncio.Task[None]] = []

    async def open_sockets(self) -> None:
        """The staff sockets, one socket per buyer, the chatters' sockets, each read by a task of its own."""
        sockets: list[tuple[str, str, int | None]] = [
            (token, name, None) for token, name in zip(self.staff_tokens, self.staff_names, strict=True)
        ]
        sockets += [(token, f"buyer{buyer}", buyer) for buyer, token in enumerate(self.buyer_tokens)]
        sockets += [(token, f"chatter{index}", None) for index, token in enumerate(self.chatter_tokens)]
        for token, name, buyer in sockets:
            reader, writer = await wsclient.connect(HOST, self.server.port, f"/ws/rooms/{ROOM}", token)
            await wsclient.read_frame(reader)  # the snapshot
            self.writers.append(writer)
            if name.startswith("chatter"):
                self.chat_writers.append(writer)
            self.listeners.append(asyncio.create_task(self.listen(reader, writer, name, buyer)))

    async def close_sockets(self) -> None:
        await wsclient.close(self.listeners, self.writers)

    async def listen(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str, buyer: int | None
    ) -> None:
        """Read a socket's frames; time the service.message events among them (only frames with one are decoded).
        Answer the server's pings: one unanswered for SLOW_VIEWER_MS closes the socket with 4000."""
        try:
            while True:
                opcode, payload = await wsclient.next_frame(reader, writer)
                if opcode == 0x8:
                    self.closed.append(f"{name}: {wsclient.close_code(payload)}")
                    return
                if SERVICE not in payload:
                    continue
                now = time.time() * 1000
                for item in orjson.loads(payload).get("events", ()):
                    if item["type"].startswith("service."):
                        self.received(name, buyer, item, now)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.append(f"{name}: connection lost")

    def received(self, name: str, buyer: int | None, item: dict[str, Any], now: float) -> None:
        phase = self.phase
        if name.startswith("chatter"):
            phase.leaked_to_chatters += 1
            return
        if buyer is not None:
            phase.buyer_events.append((buyer, item.get("thread_id") or item["thread"]["id"]))
        if item["type"] != "service.message":
            return
        words = str(item["message"]["text"]).split()
        sent = phase.sent.get(int(words[-1])) if len(words) == 3 and words[0] == "bench" else None
        if sent is None:
            phase.strays += 1
            return
        addressed = (sent.kind == "question") == (buyer is None)
        if not addressed:
            phase.echoes += 1
        elif name in sent.arrivals:
            phase.duplicates += 1
        else:
            sent.arrivals[name] = now

    def targets(self, sent: Sent) -> list[str]:
        return self.staff_names if sent.kind == "question" else [f"buyer{sent.buyer}"]

    # --- the load ---------------------------------------------------------------------------------

    async def private(self, stop: asyncio.Event, connections: asyncio.Queue[Connection]) -> None:
        """--rate messages/s, questions and answers in turn, each on a connection of the pool, not awaiting each."""
        loop = asyncio.get_running_loop()
        start, count = loop.time(), 0
        flying: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            delay = start + count / self.args.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                if stop.is_set():
                    break
            buyer: int | None = None
            if count % 2:
                if self.waiting:
                    buyer = self.waiting.popleft()
                elif self.thread_of:
                    buyer = random.choice(list(self.thread_of))
            count += 1
            self.tag += 1
            if buyer is None:
                task = asyncio.create_task(self.ask(self.tag, random.randrange(self.args.buyers), connections))
            else:
                task = asyncio.create_task(self.answer(self.tag, buyer, connections))
            flying.add(task)
            task.add_done_callback(flying.discard)
        await asyncio.gather(*flying)

    async def ask(self, tag: int, buyer: int, connections: asyncio.Queue[Connection]) -> None:
        body = orjson.dumps({"text": f"bench q {tag}", "room_id": ROOM})
        answer = await self.post(Sent("question", buyer), tag, f"/api/merchants/{MERCHANT}/messages",
                                 self.buyer_tokens[buyer], body, connections)  # fmt: skip
        if answer is not None:
            self.thread_of[buyer] = answer["thread"]["id"]
            self.waiting.append(buyer)

    async def answer(self, tag: int, buyer: int, connections: asyncio.Queue[Connection]) -> None:
        path = f"/api/merchants/{MERCHANT}/service/threads/{self.thread_of[buyer]}/messages"
        body = orjson.dumps({"text": f"bench a {tag}"})
        await self.post(Sent("answer", buyer), tag, path, self.host_token, body, connections)

    async def post(
        self, sent: Sent, tag: int, path: str, token: str, body: bytes, connections: asyncio.Queue[Connection]
    ) -> dict[str, Any] | None:
        """POST a message (a fresh Idempotency-Key) and note it; its answer's JSON when 201."""
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            f"Idempotency-Key: {secrets.token_hex(8)}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        connection = await connections.get()
        self.phase.sent[tag] = sent
        try:
            sent.at_ms = time.time() * 1000
            started = time.perf_counter()
            connection.writer.write(request)
            head, answer = await purchase_bench.read_answer(connection.reader)
            sent.http_ms = 1000 * (time.perf_counter() - started)
            sent.status = int(head[9:12])
        except (ConnectionError, asyncio.IncompleteReadError):
            connection.writer.close()
            connection = await Connection.open(self.server.port)
            return None
        finally:
            connections.put_nowait(connection)
        return dict(orjson.loads(answer)) if sent.status == 201 else None


@dataclass
class Connection:
    """A keep-alive HTTP/1.1 connection of the pool."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)


async def loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """How late this process's event loop wakes from a 10 ms sleep (it times every arrival)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.01)
        lags.append(1000 * (loop.time() - before - 0.01))


async def run_phase(bench: Bench, viewers: Viewers, name: str, seconds: float) -> dict[str, Any]:
    """One phase: --seconds of chat (and of private messages in "private"), the deliveries waited for; its figures."""
    args, server = bench.args, bench.server
    phase = bench.phase = Phase()
    await viewers.tell(b"measure")
    connections: asyncio.Queue[Connection] = asyncio.Queue()
    if name != "chat":
        for _ in range(args.connections):
            connections.put_nowait(await Connection.open(server.port))
    meter = cpu.Meter.start(server, [os.getpid(), *viewers.pids])
    stop, lag_stop = asyncio.Event(), asyncio.Event()
    lags: list[float] = []
    lagging = asyncio.create_task(loop_lag(lag_stop, lags))
    started = time.monotonic()
    chatting = asyncio.create_task(chat.send(bench.chat_writers, args.chat, stop))
    private = asyncio.create_task(bench.private(stop, connections)) if name != "chat" else None
    await asyncio.sleep(seconds)
    stop.set()
    chat_sent = await chatting
    elapsed = time.monotonic() - started
    cpu_percent = meter.percent(elapsed)
    if private is not None:
        await private  # every request answered (or failed)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and any(
        sent.status == 201 and len(sent.arrivals) < len(bench.targets(sent)) for sent in phase.sent.values()
    ):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the last chat on its way to the viewers; a late stray event, if any, lands here
    lag_stop.set()
    await lagging
    reports = await viewers.report()
    while not connections.empty():
        connections.get_nowait().writer.close()

    questions = [sent for sent in phase.sent.values() if sent.kind == "question"]
    answers = [sent for sent in phase.sent.values() if sent.kind == "answer"]

    def delivery(messages: list[Sent]) -> list[float]:
        return [arrival - sent.at_ms for sent in messages for arrival in sent.arrivals.values()]

    lost = [
        tag
        for tag, sent in phase.sent.items()
        if sent.status == 201
        and any(sent.arrivals.get(target, float("inf")) - sent.at_ms > 1000 * args.timeout
                for target in bench.targets(sent))
    ]  # fmt: skip
    statuses = Counter(str(sent.status) for sent in phase.sent.values())
    leaked_buyers = sum(1 for buyer, thread in phase.buyer_events if bench.thread_of.get(buyer) != thread)
    leaked_guests = sum(report["leaked"] for report in reports)
    chat_ms = [value for report in reports for value in report["chat_ms"]]
    question_ms, answer_ms = delivery(questions), delivery(answers)
    private_ms = question_ms + answer_ms
    ok = [sent for sent in phase.sent.values() if sent.status == 201]
    return {
        "phase": name,
        "seconds": round(elapsed, 1),
        "chat_sent": chat_sent,
        "chat_samples": len(chat_ms),
        "chat_expected": chat_sent * sum(report["sampled"] for report in reports),
        "chat_p50_ms": figures.ms(chat_ms, 0.50),
        "chat_p99_ms": figures.ms(chat_ms, 0.99),
        "chat_max_ms": round(max(chat_ms), 1) if chat_ms else None,
        "sent": len(phase.sent),
        "sent_per_s": round(len(phase.sent) / elapsed, 1),
        "answered_201": len(ok),
        "statuses": dict(statuses),
        "questions": len(questions),
        "answers": len(answers),
        "question_p50_ms": figures.ms(question_ms, 0.50),
        "question_p99_ms": figures.ms(question_ms, 0.99),
        "answer_p50_ms": figures.ms(answer_ms, 0.50),
        "answer_p99_ms": figures.ms(answer_ms, 0.99),
        "private_p50_ms": figures.ms(private_ms, 0.50),
        "private_p99_ms": figures.ms(private_ms, 0.99),
        "private_max_ms": round(max(private_ms), 1) if private_ms else None,
        "http_question_p50_ms": figures.ms([s.http_ms for s in questions if s.http_ms is not None], 0.50),
        "http_question_p99_ms": figures.ms([s.http_ms for s in questions if s.http_ms is not None], 0.99),
        "http_answer_p50_ms": figures.ms([s.http_ms for s in answers if s.http_ms is not None], 0.50),
        "http_answer_p99_ms": figures.ms([s.http_ms for s in answers if s.http_ms is not None], 0.99),
        "lost": len(lost),
        "lost_tags": lost[:20],
        "leaked_to_guests": leaked_guests,
        "leaked_to_chatters": phase.leaked_to_chatters,
        "leaked_to_buyers": leaked_buyers,
        "leaked": leaked_guests + phase.leaked_to_chatters + leaked_buyers,
        "echoes": phase.echoes,
        "duplicates": phase.duplicates,
        "strays": phase.strays,
        "viewer_frames_per_s": round(sum(report["frames"] for report in reports) / elapsed),
        "viewers_closed": sum(report["closed"] for report in reports),
        "client_loop_lag_p99_ms": figures.ms(lags, 0.99),
        **cpu_percent,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """One server, the room filled, the warm-up, then the rounds of both phases; every phase and the summary."""
    phases: list[dict[str, Any]] = []
    with running(workers=args.workers, env=ENV) as server:
        bench = Bench(args, server)
        guests = args.viewers - args.staff - args.buyers - chat.chatters(args.chat)
        viewers = await Viewers.start("loadtests.bench.service_viewers", server, ROOM, guests, args.clients,
                                      args.sampled)  # fmt: skip
        try:
            await bench.open_sockets()
            print(f"{viewers.connected + len(bench.writers):,} sockets in the room in {viewers.seconds:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
            await asyncio.sleep(2)
            warmup = await run_phase(bench, viewers, "warm-up", args.warmup)
            for number in range(1, args.rounds + 1):
                for name in PHASES if number % 2 else tuple(reversed(PHASES)):
                    phase = await run_phase(bench, viewers, name, args.seconds)
                    phases.append({"round": number, **phase})
                    print(
                        f"round {number}/{args.rounds}, {name}: chat p99 {phase['chat_p99_ms']} ms"
                        + (
                            f", private p99 {phase['private_p99_ms']} ms ({phase['answered_201']:,} sent 201), "
                            f"lost {phase['lost']}"
                            if name == "private"
                            else ""
                        )
                        + f", leaked {phase['leaked']}, others CPU {phase['others_cpu_percent']}%",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            await viewers.quit()
            await bench.close_sockets()
    return {
        "command": "python -m loadtests.bench.service_bench " + " ".join(args.argv),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, {platform.platform()}",
        "workers": args.workers,
        "viewers": args.viewers,
        "guests_connected": viewers.connected,
        "connect_seconds": round(viewers.seconds, 1),
        "staff": args.staff,
        "buyers": args.buyers,
        "chatters": chat.chatters(args.chat),
        "rate": args.rate,
        "chat": args.chat,
        "timeout": args.timeout,
        "closed": bench.closed,
        "warmup": warmup,
        "summary": summarize(phases),
        "phases": phases,
    }


def summarize(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase, over its rounds: medians of the latencies and CPU, the worst delivery, sums of the counts; the
    two ratios (of the medians, and each round's)."""
    lines = {}
    for name in PHASES:
        mine = [phase for phase in phases if phase["phase"] == name]
        line: dict[str, Any] = {"phase": name, "rounds": len(mine)}
        for figure in (
            "chat_p50_ms", "chat_p99_ms", "sent_per_s", "question_p50_ms", "question_p99_ms", "answer_p50_ms",
            "answer_p99_ms", "private_p50_ms", "private_p99_ms", "http_question_p50_ms", "http_question_p99_ms",
            "http_answer_p50_ms", "http_answer_p99_ms", "client_loop_lag_p99_ms",
            *(f"{program}_cpu_percent" for program in cpu.PROGRAMS),
        ):  # fmt: skip
            line[figure] = figures.median([phase[figure] for phase in mine])
        line["chat_p99_ms_each"] = [phase["chat_p99_ms"] for phase in mine]
        line["private_p99_ms_each"] = [phase["private_p99_ms"] for phase in mine]
        line["private_max_ms"] = max((p["private_max_ms"] for p in mine if p["private_max_ms"] is not None),
                                     default=None)  # fmt: skip
        for figure in ("sent", "answered_201", "lost", "leaked", "leaked_to_guests", "leaked_to_chatters",
                       "leaked_to_buyers", "strays", "duplicates", "chat_sent", "chat_samples",
                       "chat_expected"):  # fmt: skip
            line[figure] = sum(phase[figure] for phase in mine)
        lines[name] = line
    chat, private = lines["chat"], lines["private"]
    by_round = {(phase["round"], phase["phase"]): phase for phase in phases}
    rounds = sorted({phase["round"] for phase in phases})
    return {
        "lines": [chat, private],
        "private_over_chat": figures.ratio(private["private_p99_ms"], private["chat_p99_ms"]),
        "questions_over_chat": figures.ratio(private["question_p99_ms"], private["chat_p99_ms"]),
        "answers_over_chat": figures.ratio(private["answer_p99_ms"], private["chat_p99_ms"]),
        "private_over_chat_each": [
            figures.ratio(by_round[r, "private"]["private_p99_ms"], by_round[r, "private"]["chat_p99_ms"])
            for r in rounds
        ],
        "chat_cost": figures.ratio(private["chat_p99_ms"], chat["chat_p99_ms"]),
        "chat_cost_each": [
            figures.ratio(by_round[r, "private"]["chat_p99_ms"], by_round[r, "chat"]["chat_p99_ms"]) for r in rounds
        ],
    }


def failures(result: dict[str, Any]) -> list[str]:
    """What went wrong: a message lost, refused or unanswered; a leak; a socket closed by the server; no figures."""
    found = []
    for phase in [{"round": 0, **result["warmup"]}, *result["phases"]]:
        where = "warm-up" if phase["round"] == 0 else f"round {phase['round']}, {phase['phase']}"
        if phase["lost"]:
            found.append(f"{where}: {phase['lost']} message(s) answered 201 never reached their sockets within "
                         f"{result['timeout']:g} s (tags {phase['lost_tags']})")  # fmt: skip
        if phase["sent"] != phase["answered_201"]:
            found.append(f"{where}: {phase['sent']} messages sent, {phase['answered_201']} answered 201 "
                         f"(statuses {phase['statuses']})")  # fmt: skip
        if phase["leaked"]:
            found.append(f"{where}: {phase['leaked_to_guests']} service event(s) reached guests, "
                         f"{phase['leaked_to_chatters']} chatters, {phase['leaked_to_buyers']} a buyer whose "
                         "thread they were not")  # fmt: skip
        if phase["viewers_closed"]:
            found.append(f"{where}: {phase['viewers_closed']} viewer(s) closed")
        if not phase["chat_samples"]:
            found.append(f"{where}: no chat message timed")
        if phase["phase"] != "chat" and not phase["answered_201"]:
            found.append(f"{where}: no private message sent")
    if result["closed"]:
        found.append(f"the bench's own sockets closed: {result['closed']}")
    return found


def report(result: dict[str, Any]) -> str:
    """The table (a row per phase), the two ratios, the counts, the checks, the command and the machine."""
    summary = result["summary"]

    def pair(line: dict[str, Any], figure: str) -> str | None:
        low, high = line[f"{figure}_p50_ms"], line[f"{figure}_p99_ms"]
        return None if low is None else f"{table.cell(low)} / {table.cell(high)}"

    rows = [
        [
            "chat alone" if line["phase"] == "chat" else "chat + private messages",
            line["chat_p50_ms"],
            line["chat_p99_ms"],
            " · ".join(table.cell(value) for value in line["chat_p99_ms_each"]),
            line["sent_per_s"] if line["phase"] != "chat" else None,
            line["question_p50_ms"],
            line["question_p99_ms"],
            line["answer_p50_ms"],
            line["answer_p99_ms"],
            line["private_max_ms"],
            pair(line, "http_question"),
            pair(line, "http_answer"),
            line["answered_201"] if line["phase"] != "chat" else None,
            line["lost"],
            line["leaked"],
            *(line[f"{program}_cpu_percent"] for program in cpu.PROGRAMS),
        ]
        for line in summary["lines"]
    ]
    chat, private = summary["lines"]

    def each(values: list[float | None]) -> str:
        return ", ".join("n/a" if value is None else f"{value:.2f}" for value in values)

    def x(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}x"

    lines = [table.markdown(COLUMNS, rows), ""]
    lines.append(
        f"ratio private p99 / chat p99 (same phase): {x(summary['private_over_chat'])} (questions "
        f"{x(summary['questions_over_chat'])}, answers {x(summary['answers_over_chat'])}; each round: "
        f"{each(summary['private_over_chat_each'])})"
    )
    lines.append(
        f"ratio chat p99 with private messages / without: {x(summary['chat_cost'])} (each round: "
        f"{each(summary['chat_cost_each'])})"
    )
    lines.append(
        f"room: {result['guests_connected']:,} guests + {result['staff']} staff + {result['buyers']} buyers + "
        f"{result['chatters']} chatters (guests connected in {result['connect_seconds']:g} s), {result['workers']} "
        f"worker(s); chat {result['chat']:g}/s from the chatters, timed at "
        f"{chat['chat_samples'] + private['chat_samples']:,} of {chat['chat_expected'] + private['chat_expected']:,} "
        f"expected deliveries; private {result['rate']:g}/s "
        f"asked, {private['sent']:,} sent, {private['answered_201']:,} answered 201"
    )
    lines.append(
        f"private p50 (median) {table.cell(private['private_p50_ms'])} ms, p99 each round: "
        + " · ".join(table.cell(value) for value in private["private_p99_ms_each"])
        + f"; the bench's event loop late p99 {table.cell(private['client_loop_lag_p99_ms'])} ms; echoes and "
        f"strays not timed, duplicates {private['duplicates']}"
    )
    problems = failures(result)
    lines.extend(f"FAILED: {problem}" for problem in problems)
    if not problems:
        lines.append(
            f"checks: 0 lost (every 201 reached its sockets within {result['timeout']:g} s), 0 leaked (no service "
            "event at a guest, a chatter or another buyer), every message answered 201, no socket closed"
        )
    lines.append(f"command: {result['command']}")
    lines.append(f"machine: {result['machine']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=5000, help="room sockets in all (staff and buyers included)")
    parser.add_argument("--buyers", type=int, default=50, help="signed-in buyers among them, one socket each")
    parser.add_argument("--staff", type=int, default=1, help="the shop's host sockets among them")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--rate", type=float, default=50, help="private messages/s, questions and answers in turn")
    parser.add_argument("--chat", type=float, default=20, help="chat messages/s from the host's socket")
    parser.add_argument("--seconds", type=float, default=20, help="each phase's measured seconds")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of both kinds of traffic first, not measured")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the two phases, the order swapping")
    parser.add_argument("--sampled", type=int, default=200, help="guests that time the chat")
    parser.add_argument("--clients", type=int, default=2, help="viewer processes of the load generator")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive HTTP connections sending messages")
    parser.add_argument("--timeout", type=float, default=5, help="seconds after which an undelivered message is lost")
    parser.add_argument("--json", type=Path, help="also write every phase and the summary here, as JSON")
    args = smoke.parse(parser, SMOKE, argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if (
        args.viewers < args.staff + args.buyers + chat.chatters(args.chat)
        or args.staff < 1
        or args.buyers < 1
        or args.chat <= 0
    ):
        parser.error("--viewers must hold --staff (>= 1), --buyers (>= 1) and the chatters; --chat must be > 0")
    raise_open_files()
    result = uvloop.run(run(args))
    smoke.emit(result, args.json, report, failures)


if __name__ == "__main__":
    main()
