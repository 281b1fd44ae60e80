"""Many nodes behind haproxy (deploy/haproxy.cfg): a rolling restart during a show loses nothing.

Three real server processes on the session's Redis and PostgreSQL and a real haproxy in front of
them (the repository's config, its addresses from the environment). Viewers, the host (chatting,
pinning, streaming video over WHIP) and a flash sale's buyers all go through haproxy. Each node in
turn gets SIGTERM, is waited for, is started again on its port, and is waited for until haproxy
sees it healthy. Then a node holding the video is killed outright (SIGKILL). docs/scaling.md
("Many nodes") has the figures these tests print (run them with -s).
"""

from __future__ import annotations

import asyncio
import csv
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aioice.ice
import httpx
import orjson
import pytest
import websockets
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from loadtests.support import server as launcher
from loadtests.support.server import ServerProcess
from server import keys
from server.live.history import History
from streaming import client as video
from streaming.client import PatternTrack, Session, WhipError
from tests.conftest import ROOT, SECRET_KEY, Shop, free_port, make_shop, member
from tests.sale_helpers import GOOD_CARD, auth, create_sale, invariant, wait_recorded
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio

CONFIG = ROOT / "deploy" / "haproxy.cfg"
NODES = 3
VIEWERS = 12
# ICE on the loopback interface only, in the nodes as in this process (tests/streaming does the same).
LOOPBACK_ONLY = "import aioice.ice; aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ['127.0.0.1']"
NODE_COMMAND = [sys.executable, "-c", f"{LOOPBACK_ONLY}; import runpy; runpy.run_module('server', run_name='__main__')"]
RETRIED = (502, 503, 504)  # what a client retries with the same Idempotency-Key, as it does a dropped connection


def rounded(values: list[float]) -> list[float]:
    return [round(value, 2) for value in values]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


class Balancer:
    """haproxy on a free port, in the foreground, with deploy/haproxy.cfg and its admin socket."""

    def __init__(self, tmp: Path, node_ports: list[int]) -> None:
        binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
        if binary is None:
            pytest.skip("needs Debian's haproxy (scripts/test installs it)")
        self.port = free_port()
        self.socket = tmp / "haproxy.sock"
        self.log_path = tmp / "haproxy.log"
        env = {
            **os.environ,
            "LIVECART_LISTEN": f"127.0.0.1:{self.port}",
            "HAPROXY_SOCKET": str(self.socket),
            **{f"LIVECART_NODE{index + 1}": f"127.0.0.1:{port}" for index, port in enumerate(node_ports)},
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [binary, "-db", "-f", str(CONFIG)], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def servers(self) -> dict[str, dict[str, str]]:
        """`show stat` of the nodes and their BACKEND: name -> row (status, scur: current sessions, wretr: retries,
        wredis: redispatches, ...)."""
        reader, writer = await asyncio.open_unix_connection(str(self.socket))
        writer.write(b"show stat\n")
        raw = await reader.read()
        writer.close()
        rows = csv.DictReader(raw.decode().removeprefix("# ").splitlines())
        return {row["svname"]: row for row in rows if row["pxname"] == "nodes"}

    async def wait_up(self, names: list[str], timeout: float = 20) -> None:
        async def up() -> bool:
            servers = await self.servers()
            return all(servers[name]["status"] == "UP" for name in names)

        deadline = time.monotonic() + seconds(timeout)
        while not (self.socket.exists() and await up()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"haproxy does not see {names} up:\n{self.log_path.read_text()}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Viewer:
    """A room socket through haproxy that comes back with since/epoch when closed, as static/js/room-socket.js does:
    what each connection started with, how each ended, and every durable offset it applied."""

    url: str
    token: str
    epoch: str = ""
    offset: int = 0  # the last durable offset applied
    first_offset: int = 0  # the first snapshot's
    applied: list[int] = field(default_factory=list)
    duplicates: int = 0  # durable events received again (a client ignores them; the server should not send them)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)  # "snapshot" or "recovered", per connection
    closes: list[tuple[int | None, int]] = field(default_factory=list)  # (close code, restart under way)
    back: list[tuple[int, float]] = field(default_factory=list)  # (restart, when the next first frame came)
    refused: int = 0  # connection attempts that failed before a first frame
    events: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    connection: ClientConnection | None = None
    restart: list[int] = field(default_factory=lambda: [0])  # shared: the restart under way (1, 2, 3)

    async def run(self) -> None:
        while True:
            query = f"?since={self.offset}&epoch={self.epoch}" if self.epoch else ""
            try:
                async with websockets.connect(self.url + query, max_size=2**22, open_timeout=seconds(10)) as ws:
                    await ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
                    try:
                        async for raw in ws:
                            if self.connection is None:
                                self.connection = ws
                            self._frame(orjson.loads(raw))
                    except websockets.ConnectionClosed:
                        pass
                    finally:
                        self.connection = None
                    self.closes.append((ws.close_code, self.restart[0]))
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                self.refused += 1
            await asyncio.sleep(random.uniform(0.05, 0.25))  # "after a short random delay" (docs/protocol.md)

    def _frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] in ("snapshot", "recovered") and self.closes:
            self.back.append((self.closes[-1][1], time.monotonic()))
        if frame["type"] == "snapshot":
            self.starts.append("snapshot")
            if not self.epoch:
                self.first_offset = frame["offset"]
            self.epoch, self.offset = frame["epoch"], frame["offset"]
        elif frame["type"] == "recovered":
            self.starts.append("recovered")
            assert frame["epoch"] == self.epoch
            self._apply(frame["events"])
        elif frame["type"] == "batch":
            self._apply(frame["events"])
        elif frame["type"] in ("ack", "error"):
            self.replies[str(frame.get("id"))] = frame

    def _apply(self, events: list[dict[str, Any]]) -> None:
        for item in events:
            offset = item.get("offset")
            if offset is not None:
                if offset <= self.offset:
                    self.duplicates += 1
                    continue
                if offset != self.offset + 1:
                    self.gaps.append((self.offset, offset))
                self.offset = offset
                self.applied.append(offset)
            self.events.append(item)

    async def request(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """Send a command on the open socket; its ack or error, or None when there is no socket or it closed first."""
        connection = self.connection
        if connection is None:
            return None
        request_id = secrets.token_hex(4)
        try:
            await connection.send(orjson.dumps({"type": kind, "id": request_id, **fields}).decode())
            while request_id not in self.replies:
                if self.connection is not connection:
                    return None
                await asyncio.sleep(0.01)
        except websockets.ConnectionClosed:
            return None
        return self.replies.pop(request_id)

    def stream_states(self) -> list[str]:
        return [item["state"] for item in self.events if item["type"] == "stream.state"]


@dataclass
class Buyers:
    """Buyers through haproxy, one after another in each of a few lanes: a purchase each, every second one paid.
    A dropped connection or a 502-504 is sent again with the same Idempotency-Key, as a client does."""

    base_url: str
    sale_id: str
    orders: dict[str, tuple[str, str]] = field(default_factory=dict)  # order id -> (status, buyer's token)
    retries: int = 0

    async def lane(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            token = member()
            response = await self._post(http, f"/api/sales/{self.sale_id}/purchases", {"quantity": 1}, token)
            assert response.status_code in (200, 201), response.text  # 200: a retry of a purchase made
            order_id = response.json()["order_id"]
            self.orders[order_id] = ("held", token)
            if len(self.orders) % 2 == 0:
                response = await self._post(http, f"/api/orders/{order_id}/payment", {"card_number": GOOD_CARD}, token)
                assert response.status_code == 200, response.text
                self.orders[order_id] = ("paid", token)
            await asyncio.sleep(0.1)

    async def made(self, count: int) -> None:
        await until(lambda: len(self.orders) >= count, 20, f"{count} purchases")

    async def _post(self, http: httpx.AsyncClient, path: str, body: dict[str, Any], token: str) -> httpx.Response:
        headers = {**auth(token), "Idempotency-Key": secrets.token_hex(8)}
        while True:
            try:
                response = await http.post(self.base_url + path, json=body, headers=headers)
            except httpx.TransportError:
                pass
            else:
                if response.status_code not in RETRIED:
                    return response
            self.retries += 1
            await asyncio.sleep(0.1)


@dataclass
class Studio:
    """The host's video: published over WHIP through haproxy, published again whenever the room hears `offline`."""

    whip: str
    token: str
    host: Viewer
    sessions: list[Session] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)  # WHIP offers refused (409: the old owner's lease still held)
    gaps: list[float] = field(default_factory=list)  # seconds from `offline` heard to the new offer answered

    async def publish(self) -> None:
        while True:
            try:
                self.sessions.append(await video.publish(self.whip, self.token, PatternTrack(160, 120)))
                return
            except WhipError as problem:
                self.refused.append(problem.status)
            except httpx.TransportError:
                self.refused.append(0)
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for session in self.sessions:
            await session.pc.close()

    async def run(self) -> None:
        heard = 0
        while True:
            offline = self.host.stream_states().count("offline")
            if offline > heard:
                heard, started = offline, time.monotonic()
                await self.sessions[-1].stop(delete=False)  # its server is gone
                await self.publish()
                self.gaps.append(time.monotonic() - started)
            await asyncio.sleep(0.02)


@dataclass
class Cluster:
    """The nodes: `python -m server` processes on the session's stores, each restarted on its own port."""

    tmp: Path
    env: dict[str, str]
    ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(NODES)])
    processes: list[ServerProcess] = field(default_factory=list)
    started: int = 0

    def start(self, index: int) -> ServerProcess:
        self.started += 1
        folder = self.tmp / f"node{index + 1}-{self.started}"
        folder.mkdir()
        ready = seconds(launcher.READY_SECONDS)
        process = launcher.start_server(folder, self.env, self.ports[index], command=NODE_COMMAND, ready_seconds=ready)
        if index < len(self.processes):
            self.processes[index] = process
        else:
            self.processes.append(process)
        return process

    def node_of(self, process_id: str) -> int:
        """The node whose process has this id (server.node: "<pid>-<random>")."""
        pid = int(process_id.split("-")[0])
        return next(index for index, process in enumerate(self.processes) if process.process.pid == pid)


@pytest.fixture
async def cluster(stores: dict[str, str], tmp_path: Path) -> AsyncIterator[Cluster]:
    env = {
        **stores,
        "SECRET_KEY": SECRET_KEY,
        "CHAT_RATE_COUNT": "100000",
        "VIDEO_LEASE_MS": "2000",
        "VIDEO_RENEW_MS": "250",
    }
    nodes = Cluster(tmp_path, env)
    try:
        for index in range(NODES):
            await asyncio.to_thread(nodes.start, index)
        yield nodes
    finally:
        for process in nodes.processes:
            process.stop()


async def test_rolling_restart_behind_haproxy_loses_no_event_no_purchase_and_moves_the_video(
    cluster: Cluster, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """Each node in turn restarted (SIGTERM, then started again) under haproxy during a show: every viewer is closed
    with 1012 at most once per restart and comes back `recovered` with every durable event exactly once; every
    acknowledged chat message is in the history; every acknowledged purchase and payment is in Redis and
    PostgreSQL, the sale's invariant holds and every viewer's stock ends at the sale's; when the node holding the
    host's video stops, the room hears `offline`, the host's next WHIP offer is taken at once by another node (never
    409) and viewers watch again."""
    balancer = Balancer(tmp_path, cluster.ports)
    tasks: list[asyncio.Task[None]] = []
    cleanups: list[Callable[[], Awaitable[None]]] = []
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        names = [f"node{index + 1}" for index in range(NODES)]
        await balancer.wait_up(names)
        shop: Shop = await asyncio.to_thread(make_shop, balancer.base_url, balancer.ws_url, redis_url)
        room_url = f"{balancer.ws_url}/ws/rooms/{shop.room_id}"
        restart = [0]
        host = Viewer(room_url, shop.host, restart=restart)
        viewers = [Viewer(room_url, member(), restart=restart) for _ in range(VIEWERS)]
        everyone = [host, *viewers]
        tasks += [asyncio.create_task(person.run()) for person in everyone]
        await until(lambda: all(person.connection for person in everyone), what="every viewer connected")
        spread = {name: int(row["scur"]) for name, row in (await balancer.servers()).items() if name in names}
        assert all(sessions >= 3 for sessions in spread.values()), spread  # leastconn: about 13/3 each

        assert (await host.request("room.status", status="live") or {}).get("type") == "ack"
        sale = await asyncio.to_thread(create_sale, shop, balancer.base_url, quantity=10_000, per_user_limit=1)
        studio = Studio(f"{balancer.base_url}/whip/{shop.room_id}", shop.host, host)
        cleanups.append(studio.close)
        await studio.publish()
        await until(lambda: viewers[0].stream_states()[-1:] == ["online"], 20, "the stream online")
        tasks.append(asyncio.create_task(studio.run()))

        acked: list[str] = []

        async def show() -> None:
            for n in range(1_000_000):
                if n % 5 == 4:
                    await host.request("product.pin", product_id=shop.products[n // 5 % len(shop.products)])
                elif (await host.request("chat.send", text=f"message {n}") or {}).get("type") == "ack":
                    acked.append(f"message {n}")
                await asyncio.sleep(0.1)

        tasks.append(asyncio.create_task(show()))
        buyers = Buyers(balancer.base_url, sale["id"])
        stop_buying = asyncio.Event()
        http = httpx.AsyncClient(timeout=seconds(30))
        lanes = [asyncio.create_task(buyers.lane(http, stop_buying)) for _ in range(3)]
        tasks += lanes

        owners: list[int] = []
        sigterms: list[float] = []
        drains: list[float] = []
        starts: list[float] = []
        ups: list[float] = []
        for index in range(NODES):
            owners.append(cluster.node_of(str(await redis.get(keys.video_owner(shop.room_id)))))
            await buyers.made(6 * (index + 1))
            restart[0] = index + 1
            process = cluster.processes[index]
            sigterms.append(time.monotonic())
            process.process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.process.wait, seconds(20)) == 0
            drains.append(time.monotonic() - sigterms[-1])
            await asyncio.to_thread(cluster.start, index)
            starts.append(time.monotonic() - sigterms[-1] - drains[-1])
            await balancer.wait_up(names)
            ups.append(time.monotonic() - sigterms[-1] - drains[-1] - starts[-1])
            await until(lambda: all(person.connection for person in everyone), 20, "every viewer back")
            if owners[-1] == index:  # the video's node went away: the host published again elsewhere
                await until(lambda: host.stream_states()[-1:] == ["online"], 20, "the stream online again")
        restart[0] = NODES + 1
        await buyers.made(6 * (NODES + 1))
        stop_buying.set()
        await asyncio.gather(*lanes)
        await http.aclose()

        # Video: it moved each time its node went away, no offer refused; a viewer through haproxy watches it.
        owner_now = cluster.node_of(str(await redis.get(keys.video_owner(shop.room_id))))
        moves = sum(owner == index for index, owner in enumerate(owners))
        assert moves >= 1 and len(studio.gaps) == moves and studio.refused == []
        guest = httpx.post(f"{balancer.base_url}/api/guest").json()["token"]
        watcher = await video.watch(f"{balancer.base_url}/whep/{shop.room_id}", guest, ("video",), decode=False)
        try:
            await watcher.wait_connected(seconds(20))
            await until(lambda: "video" in watcher.counters and watcher.counters["video"].frames > 0, 20, "frames")
        finally:
            await watcher.stop()

        # Events: the room's history, from every viewer's first snapshot on, arrived once each, in order.
        newest = cast(list[tuple[str, Any]], await redis.xrevrange(keys.history(shop.room_id), count=1))
        last = int(newest[0][0].split("-")[0])
        await until(lambda: all(person.offset == last for person in everyone), 20, "every viewer caught up")
        history = await History(redis).between(shop.room_id, 0, last)
        assert history is not None
        chats = [orjson.loads(item)["message"]["text"] for item in history if '"chat.message"' in item]
        assert sorted(text for text in chats if text in set(acked)) == sorted(acked) and len(acked) > 20
        for person in everyone:
            assert person.applied == list(range(person.first_offset + 1, last + 1))
            assert person.duplicates == 0 and person.gaps == []
            assert person.starts == ["snapshot"] + ["recovered"] * (len(person.starts) - 1), person.starts
            assert all(code == 1012 for code, _ in person.closes), person.closes
            restarts = [during for _, during in person.closes]
            assert len(restarts) == len(set(restarts)) and len(restarts) >= 1  # at most once per restart
            assert person.stream_states().count("offline") >= 1

        # Purchases: every acknowledged order is in Redis and the record with its status; the counts add up.
        async with httpx.AsyncClient(base_url=balancer.base_url, timeout=seconds(10)) as api:
            for order_id, (status, token) in buyers.orders.items():
                order = await api.get(f"/api/orders/{order_id}", headers=auth(token))
                assert order.status_code == 200 and order.json()["status"] == status, order.text
            stock = (await api.get(f"/api/sales/{sale['id']}")).json()
        paid = sum(status == "paid" for status, _ in buyers.orders.values())
        assert (stock["sold"], stock["held"]) == (paid, len(buyers.orders) - paid), stock

        def stock_seen(person: Viewer) -> tuple[int, int]:
            latest = [item for item in person.events if item["type"] == "stock" and item["sale_id"] == sale["id"]]
            return (latest[-1]["sold"], latest[-1]["held"]) if latest else (-1, -1)

        await until(lambda: all(stock_seen(person) == (paid, len(buyers.orders) - paid) for person in everyone))
        await asyncio.to_thread(
            wait_recorded, database_url, {order: status for order, (status, _) in buyers.orders.items()}, 10
        )
        await asyncio.to_thread(invariant, shop, sale["id"])

        servers = await balancer.servers()
        backend, after = servers["BACKEND"], {name: int(servers[name]["scur"]) for name in names}
        closed = sum(len(person.closes) for person in everyone)
        reconnected = [
            max(
                (at - sigterms[index] for person in everyone for during, at in person.back if during == index + 1),
                default=0,
            )
            for index in range(NODES)
        ]
        recovered = sum(person.starts.count("recovered") for person in everyone)
        snapshots = sum(person.starts.count("snapshot") for person in everyone) - len(everyone)
        print(
            f"\nrolling restart of {NODES} nodes, {len(everyone)} room sockets spread {spread}, after: {after}"
            f"\n  drain (SIGTERM to exit) s: {rounded(drains)}; start (to /readyz 200) s: {rounded(starts)};"
            f" then seen up by haproxy s: {rounded(ups)}"
            f"\n  SIGTERM to the last closed socket back (on another node) s: {rounded(reconnected)}"
            f"\n  sockets closed with 1012: {closed}, came back recovered: {recovered}, with a snapshot: {snapshots},"
            f" failed attempts: {sum(person.refused for person in everyone)}"
            f"\n  durable events: {last}, chat acked: {len(acked)}; orders: {len(buyers.orders)} ({paid} paid),"
            f" client retries: {buyers.retries}; haproxy retries: {backend['wretr']}, redispatches: {backend['wredis']}"
            f"\n  video owners before each restart: {owners}, now {owner_now};"
            f" offline to new WHIP answer s: {rounded(studio.gaps)}"
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for cleanup in cleanups:
            await cleanup()
        await redis.aclose()
        balancer.stop()


async def test_a_node_killed_while_holding_the_video_lets_the_room_hear_offline(
    cluster: Cluster, redis_url: str, tmp_path: Path
) -> None:
    """A node holding the host's video killed (SIGKILL: it tells nobody): once its lease lapses, the next WHEP offer
    (viewers' players retry while the room says online) tells the room `offline`, once; the host publishes again."""
    balancer = Balancer(tmp_path, cluster.ports)
    tasks: list[asyncio.Task[None]] = []
    redis = Redis.from_url(redis_url, decode_responses=True)
    studio: Studio | None = None
    try:
        await balancer.wait_up([f"node{index + 1}" for index in range(NODES)])
        shop: Shop = await asyncio.to_thread(make_shop, balancer.base_url, balancer.ws_url, redis_url)
        viewer = Viewer(f"{balancer.ws_url}/ws/rooms/{shop.room_id}", member())
        tasks.append(asyncio.create_task(viewer.run()))
        studio = Studio(f"{balancer.base_url}/whip/{shop.room_id}", shop.host, viewer)
        await studio.publish()
        await until(lambda: viewer.stream_states() == ["online"], 20, "the stream online")
        owner = cluster.node_of(str(await redis.get(keys.video_owner(shop.room_id))))
        cluster.processes[owner].stop(signal.SIGKILL)
        killed = time.monotonic()
        await studio.sessions[-1].stop(delete=False)

        whep = f"{balancer.base_url}/whep/{shop.room_id}"
        guest = httpx.post(f"{balancer.base_url}/api/guest").json()["token"]
        refused: list[int] = []
        while viewer.stream_states()[-1] == "online":  # a player retrying WHEP, as static/js/room.js does
            try:
                await video.watch(whep, guest, ("video",), decode=False)
            except WhipError as problem:
                refused.append(problem.status)
            await asyncio.sleep(0.3)
            assert time.monotonic() - killed < seconds(20), f"the room was never told; offers refused: {refused}"
        assert set(refused) == {409}
        print(
            f"\nvideo owner killed: the room heard offline {time.monotonic() - killed:.2f} s later",
            f"after {len(refused)} WHEP offers",
        )
        for _ in range(3):  # offline now: more offers are refused and add nothing to the room
            with pytest.raises(WhipError, match="host_offline"):
                await video.watch(whep, guest, ("video",), decode=False)
        await studio.publish()
        await until(lambda: viewer.stream_states()[-1:] == ["online"], 20, "the stream online again")
        assert viewer.stream_states() == ["online", "offline", "online"] and studio.refused == []
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if studio is not None:
            await studio.close()
        await redis.aclose()
        balancer.stop()
