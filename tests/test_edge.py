"""The HTTP edge against a hostile client: slow requests cut off, no 500 for bad input, files private, security
headers on every answer, /metrics behind a token, room ids chosen by the server."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import stat
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from loadtests.support.server import ServerProcess
from server.protocol import Role
from tests.client import RoomClient
from tests.conftest import ROOT, SECRET_KEY, Shop, make_shop, mint, start_server
from tests.sale_helpers import auth, buy, create_sale, pay, recorded, sale_terms, viewer_token, wait_until
from tests.timing import seconds, until

pytestmark = pytest.mark.anyio

HEADER_TIMEOUT = seconds(0.6)  # what the edge server waits for a request's headers, and for its body
SLACK = seconds(2)  # how much later than its deadline a connection may be seen closed


@pytest.fixture(scope="module")
def edge(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with short header and body deadlines."""
    timeout_ms = str(int(HEADER_TIMEOUT * 1000))
    started = start_server(
        tmp_path_factory.mktemp("edge"), {**stores, "HEADER_TIMEOUT_MS": timeout_ms, "BODY_TIMEOUT_MS": timeout_ms}
    )
    yield started
    started.stop()


@asynccontextmanager
async def _connection(server: ServerProcess) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP connection to the server, closed on our side afterwards."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def _closed_after(reader: asyncio.StreamReader, started: float) -> float:
    """Read until the server closes the connection (what it sent is dropped); the seconds since `started`."""
    while await asyncio.wait_for(reader.read(65536), HEADER_TIMEOUT + SLACK):
        pass
    return time.monotonic() - started


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer: its status, headers (lowercase names) and body (Content-Length long)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT + SLACK)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def _purchase_head(content_length: int) -> bytes:
    """A purchase's request head (a valid token and key: the body is what the server reads next)."""
    return (
        "POST /api/sales/s_0000000000/purchases HTTP/1.1\r\nHost: edge\r\n"
        f"Authorization: Bearer {viewer_token()}\r\nIdempotency-Key: {secrets.token_hex(8)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


# --- F8: slow clients ---------------------------------------------------------------------------


async def test_half_sent_request_headers_are_closed_after_the_header_timeout(edge: ServerProcess) -> None:
    """A client that sends half a request head and waits is disconnected once HEADER_TIMEOUT_MS has passed."""
    started = time.monotonic()
    async with _connection(edge) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nAccept: ")
        elapsed = await _closed_after(reader, started)
    assert HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_request_headers_trickled_a_byte_at_a_time_are_closed_after_the_header_timeout(
    edge: ServerProcess,
) -> None:
    """One header byte every fifth of the timeout keeps bytes coming, but the head is not complete in time: closed."""
    head = b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    started = time.monotonic()
    async with _connection(edge) as (reader, writer):
        closed = asyncio.create_task(_closed_after(reader, started))
        for byte in head:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.wait([closed], timeout=HEADER_TIMEOUT / 5)  # the client's pace
        elapsed = await closed
    assert HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_announced_body_that_does_not_come_gets_408_and_the_connection_is_closed(edge: ServerProcess) -> None:
    """Content-Length 100 and 10 bytes sent: 408 timeout within BODY_TIMEOUT_MS, then the server closes, on the
    purchase hot path as on the routes behind Starlette."""
    staff_route = (
        "PUT /api/merchants/edge-shop/blocklist HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {mint('edge-shop', Role.ADMIN)}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    for head in (_purchase_head(100), staff_route):
        started = time.monotonic()
        async with _connection(edge) as (reader, writer):
            writer.write(head + b'{"quantity')
            status, headers, body = await _answer(reader)
            assert status == 408, body
            assert headers["connection"] == "close"
            assert orjson.loads(body)["error"]["code"] == "timeout"
            elapsed = await _closed_after(reader, started)
        assert HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_kept_alive_connection_idles_under_the_keep_alive_timeout_not_the_header_timeout(
    edge: ServerProcess,
) -> None:
    """A normal client keeps its connection: a request, an idle pause longer than the header timeout (shorter than
    uvicorn's 5 s keep-alive), and the next request on the same connection is answered. A next request whose head
    stops halfway is closed after the header timeout, counted from its first byte."""
    async with _connection(edge) as (reader, writer):
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
            status, _, body = await _answer(reader)
            assert (status, body) == (200, b"ok")
            await asyncio.sleep(HEADER_TIMEOUT * 1.5)  # the idle pause between requests is the scenario itself
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: ed")
        elapsed = await _closed_after(reader, started)
    assert HEADER_TIMEOUT * 0.9 <= elapsed <= HEADER_TIMEOUT + SLACK


async def test_hundreds_of_half_open_connections_are_all_closed_after_the_header_timeout(edge: ServerProcess) -> None:
    """300 connections that send nothing or half a request head are all closed by the server within the timeout."""
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        connections = [await stack.enter_async_context(_connection(edge)) for _ in range(300)]
        for number, (_, writer) in enumerate(connections):
            if number % 2:
                writer.write(b"POST /api/guest HTTP/1.1\r\nHost: edge\r\nContent-")
        closed = await asyncio.gather(*(_closed_after(reader, started) for reader, _ in connections))
    assert len(closed) == 300 and max(closed) <= HEADER_TIMEOUT + SLACK


# --- F10: files -----------------------------------------------------------------------------------


def _readable_by_others(root: Path) -> list[str]:
    """Every file under `root` the group or others may read, write or run, and every folder they may list or
    write (a folder's search bit alone is allowed: the embedded PostgreSQL's user needs it above its cluster)."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        others = 0o066 if stat.S_ISDIR(mode) else 0o077
        if mode & others:
            found.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return found


def test_everything_the_server_writes_in_data_dir_is_private(tmp_path: Path) -> None:
    """A server with its own Redis and PostgreSQL, on an old install's world-readable DATA_DIR, takes a purchase and a
    payment: no file or folder in DATA_DIR is then readable by the group or others (the old ones were tightened)."""
    data = tmp_path / "data"
    (data / "redis").mkdir(parents=True)
    for path in (tmp_path, data, data / "redis"):
        path.chmod(0o755)
    (data / "secret_key").write_text(SECRET_KEY)  # the old install's key: the tests' tokens stay valid
    (data / "redis" / "appendonly.aof.old").write_text("")
    for path in (data / "secret_key", data / "redis" / "appendonly.aof.old"):
        path.chmod(0o644)
    server = start_server(tmp_path, {"REDIS_URL": "", "DATABASE_URL": "", "SECRET_KEY": "", "SEED_DEMO": "0"})
    try:
        shop = make_shop(server.base_url, server.ws_url, server.redis_url)
        sale = create_sale(shop, quantity=5)
        token = viewer_token()
        bought = buy(server.base_url, token, sale["id"])
        assert bought.status_code == 201, bought.text
        order_id = bought.json()["order_id"]
        assert pay(server.base_url, token, order_id).status_code == 200
        wait_until(lambda: recorded(server.database_url, [order_id]) == {order_id: "paid"}, timeout=10)
        assert _readable_by_others(data) == []
    finally:
        server.stop()
    assert _readable_by_others(data) == []


# --- F11: security headers ------------------------------------------------------------------------

EVERY_ANSWER = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; connect-src 'self'; img-src 'self' data: blob: https:; "
        "media-src 'self' blob:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(self), microphone=(self), geolocation=()",
}


def _headers(headers: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    return {name: headers.get(name, "") for name in names}


async def test_every_kind_of_answer_carries_the_security_headers(edge: ServerProcess) -> None:
    """Every answer (pages, static files, an API answer, an API error, a 404, the purchase hot path, uvicorn's own
    400 and the room socket's handshake) says nosniff and no referrer; the pages and their files also carry the
    policy and the framing and feature switches."""
    sale_path = "/api/sales/s_0000000000/purchases"
    async with httpx.AsyncClient(base_url=edge.base_url) as http:
        pages = {
            "/": await http.get("/"),
            "/room.html": await http.get("/room.html"),
            "/js/room.js": await http.get("/js/room.js"),
        }
        answers = {
            **pages,
            "POST /api/guest": await http.post("/api/guest"),
            "GET /api/me without a token": await http.get("/api/me"),
            "GET /api/nothing-here": await http.get("/api/nothing-here"),
            "GET /nothing-here.html": await http.get("/nothing-here.html"),
            "POST purchase": await http.post(
                sale_path, json={}, headers={**auth(viewer_token()), "Idempotency-Key": "k1"}
            ),
        }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "/": 200,
        "/room.html": 200,
        "/js/room.js": 200,
        "POST /api/guest": 201,
        "GET /api/me without a token": 401,
        "GET /api/nothing-here": 404,
        "GET /nothing-here.html": 404,
        "POST purchase": 404,  # unknown_sale: the answer of the hot path's handler
    }
    for name, answer in answers.items():
        assert _headers(answer.headers, EVERY_ANSWER) == EVERY_ANSWER, name
    for name, answer in pages.items():
        assert _headers(answer.headers, PAGE_HEADERS) == PAGE_HEADERS, name
    async with _connection(edge) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: edge\r\nContent-Length: nope\r\n\r\n")  # uvicorn's own 400
        status, headers, _ = await _answer(reader)
    assert status == 400 and _headers(headers, EVERY_ANSWER) == EVERY_ANSWER
    async with websockets.connect(f"{edge.ws_url}/ws/rooms/no-such-room", open_timeout=seconds(10)) as socket:
        assert socket.response is not None
        assert _headers(socket.response.headers, EVERY_ANSWER) == EVERY_ANSWER


def test_the_pages_carry_no_policy_of_their_own() -> None:
    """The pages leave the policy to the header (a <meta> policy would be a second one, applied on top)."""
    for page in (ROOT / "static").glob("*.html"):
        html = page.read_text()
        assert "Content-Security-Policy" not in html and "<script>" not in html and " style=" not in html, page


def test_the_policy_lets_pages_reach_public_url(server_factory: Callable[..., ServerProcess]) -> None:
    """With PUBLIC_URL set (where WHIP and WHEP sessions' Locations point), the pages may connect there too."""
    public = server_factory(PUBLIC_URL="https://shop.example/")
    policy = httpx.get(f"{public.base_url}/").headers["content-security-policy"]
    assert "; connect-src 'self' https://shop.example;" in policy


# --- F12: bad input -------------------------------------------------------------------------------

# A value of every JSON type, and two that only look right ("²" is a digit to str.isdigit, not to int()).
WRONG: dict[str, Any] = {
    "list": [],
    "object": {},
    "null": None,
    "bool": True,
    "float": 1.5,
    "huge int": 10**30,
    "string": "x",
    "superscript digits": "²" * 16,
    "negative": -1,
}
WRONG_BODIES = (
    b"[]",
    b'"x"',
    b"1",
    b"null",
    b"true",
    b"{broken",
    b"[" * 30_000 + b"]" * 30_000,  # deeper than orjson (1024) and Python's json (its stack) go
    b'{"quantity": 100000000000000000000000, "price": NaN, "title": Infinity}',  # orjson refuses: json parses it
)


JSON_FIELDS_OF_PRODUCT: dict[str, type] = {"title": str, "price": int, "currency": str, "image_url": str}


@dataclass
class Endpoint:
    """A REST endpoint with a JSON body: a valid body, and the JSON type of each field it reads."""

    method: str
    path: str
    token: str
    body: dict[str, Any]
    fields: dict[str, type]


def _endpoints(base_url: str, shop: Shop) -> list[Endpoint]:
    """Every REST endpoint of the rooms and sales APIs that takes a JSON body, with a sale and an order to act on."""
    m, r = shop.merchant_id, shop.room_id
    sale = create_sale(shop, base_url, quantity=1000, per_user_limit=1000)
    buyer = viewer_token()
    order = buy(base_url, buyer, sale["id"]).json()
    product = {"title": "Hat", "price": 100, "currency": "USD", "image_url": "/img/mug.svg"}
    new_sale = sale_terms(shop, hold_seconds=60)
    countdown = {**{k: v for k, v in new_sale.items() if k != "starts_at"}, "countdown_seconds": 30}
    sale_fields = {name: str if name == "product_id" else int for name in new_sale}
    return [
        Endpoint("POST", f"/api/merchants/{m}/products", shop.admin, product, {"id": str, **JSON_FIELDS_OF_PRODUCT}),
        Endpoint("PUT", f"/api/merchants/{m}/products/{shop.products[1]}", shop.host, product, JSON_FIELDS_OF_PRODUCT),
        Endpoint("POST", f"/api/merchants/{m}/rooms", shop.admin, {"title": "Show"}, {"title": str}),
        Endpoint("PUT", f"/api/merchants/{m}/blocklist", shop.moderator, {"words": ["spam"]}, {"words": list}),
        Endpoint("POST", f"/api/merchants/{m}/rooms/{r}/sales", shop.host, new_sale, sale_fields),
        Endpoint("POST", f"/api/merchants/{m}/rooms/{r}/sales", shop.host, countdown, {"countdown_seconds": int}),
        Endpoint("POST", f"/api/sales/{sale['id']}/purchases", buyer, {"quantity": 1}, {"quantity": int}),
        Endpoint("POST", f"/api/orders/{order['order_id']}/payment", buyer, {}, {"card_number": str}),
        *_service_endpoints(base_url, shop),
    ]


def _service_endpoints(base_url: str, shop: Shop) -> list[Endpoint]:
    """The customer-service endpoints with a JSON body, on a thread with a question asked in the room."""
    m, buyer = shop.merchant_id, viewer_token()
    about = {"room_id": shop.room_id, "order_id": "o_1", "product_id": shop.products[0]}
    asked = httpx.post(f"{base_url}/api/merchants/{m}/messages", json={"text": "Size?", **about},
                       headers=_keyed(auth(buyer)))  # fmt: skip
    thread, question = asked.json()["thread"]["id"], asked.json()["message"]["id"]
    service = f"/api/merchants/{m}/service"
    text, ids, public = {"text": str}, dict.fromkeys(about, str), {"message_id": question, "text": "M"}
    return [
        Endpoint("POST", f"/api/merchants/{m}/messages", buyer, {"text": "Hi", **about}, {**text, **ids}),
        Endpoint("POST", f"/api/merchants/{m}/messages/receipt", buyer, {"read": 1}, {"read": int, "delivered": int}),
        Endpoint("POST", f"{service}/threads/{thread}/messages", shop.host, {"text": "M"}, text),
        Endpoint("POST", f"{service}/threads/{thread}/public", shop.host, public, {"message_id": int, **text}),
        Endpoint("POST", f"{service}/threads/{thread}/state", shop.host, {"state": "open"}, {"state": str}),
        Endpoint("POST", f"{service}/threads/{thread}/receipt", shop.host, {"read": 1}, {"read": int}),
        Endpoint("POST", f"{service}/replies", shop.admin, {"title": "T", "text": "x"}, {"title": str, **text}),
    ]


def _cases(kind: type, value: Any) -> list[tuple[Any, bool]]:
    """What to send a field of this JSON type for one wrong value, and whether that is of the wrong type."""
    if kind is list:  # the value itself, and a list of it
        return [(value, not isinstance(value, list)), ([value], not isinstance(value, str))]
    return [(value, not isinstance(value, kind) or isinstance(value, bool))]


def test_no_wrong_json_type_in_any_field_of_any_endpoint_is_a_500(edge: ServerProcess, redis_url: str) -> None:
    """Every JSON field of every REST endpoint, given a value of every wrong JSON type: never a 500; a value of the
    wrong type is a 400 whose message names the field. Bodies that are not a JSON object, or not JSON, are 400s."""
    shop = make_shop(edge.base_url, edge.ws_url, redis_url)
    sent = 0
    with httpx.Client(base_url=edge.base_url, timeout=seconds(10)) as http:
        for endpoint in _endpoints(edge.base_url, shop):
            headers = {**auth(endpoint.token), "Content-Type": "application/json"}
            for name, kind in endpoint.fields.items():
                for label, value in WRONG.items():
                    for given, wrong_type in _cases(kind, value):
                        body = json.dumps({**endpoint.body, name: given}).encode()  # orjson refuses 10**30
                        answer = http.request(endpoint.method, endpoint.path, content=body, headers=_keyed(headers))
                        case = f"{endpoint.method} {endpoint.path} {name}={label}: {answer.text}"
                        assert answer.status_code < 500, case
                        if wrong_type:
                            assert answer.status_code == 400, case
                            message = answer.json()["error"]["message"].replace("_", " ").lower()
                            assert name.replace("_", " ") in message, case
                        sent += 1
            for content in WRONG_BODIES:
                answer = http.request(endpoint.method, endpoint.path, content=content, headers=_keyed(headers))
                assert answer.status_code == 400, (endpoint.path, content[:40], answer.text)
    assert sent > 150


def test_garbage_sdp_offers_are_400s(edge: ServerProcess, redis_url: str) -> None:
    """WHIP and WHEP bodies that are not SDP offers (not UTF-8, empty, noise, an offer without media) are 400s."""
    shop = make_shop(edge.base_url, edge.ws_url, redis_url)
    offers = (b"\xff\xfe\x00", b"", b"v=0\r\n" * 5000, b"m=video 9 UDP/TLS/RTP/SAVPF 96\r\n", b"{}", "²".encode())
    for path, token in ((f"/whip/{shop.room_id}", shop.host), (f"/whep/{shop.room_id}", shop.guest())):
        for offer in offers:
            answer = httpx.post(
                f"{edge.base_url}{path}", content=offer, headers={**auth(token), "Content-Type": "application/sdp"}
            )
            assert answer.status_code == 400, (path, offer[:20], answer.text)


def _keyed(headers: dict[str, str]) -> dict[str, str]:
    """The headers with a fresh Idempotency-Key (the purchase and the payment need one; the others ignore it)."""
    return {**headers, "Idempotency-Key": secrets.token_hex(8)}


def test_a_bad_query_number_is_a_400_not_a_500(edge: ServerProcess, redis_url: str) -> None:
    """`?past=²` on a room's stats ("²".isdigit() is true, int() refuses it) is a 400 naming the parameter."""
    shop = make_shop(edge.base_url, edge.ws_url, redis_url)
    for past in ("²", "٣", "-1", "1.5", "99999999999999999999999"):
        answer = httpx.get(
            f"{edge.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/stats",
            params={"past": past},
            headers=auth(shop.admin),
        )
        assert answer.status_code == 400 and "'past'" in answer.json()["error"]["message"], (past, answer.text)


async def test_a_room_socket_with_a_bad_since_is_served_a_snapshot(edge: ServerProcess, redis_url: str) -> None:
    """`since` and `epoch` that are not an offset and an epoch ("²", text, a huge number) are ignored: the socket
    gets a fresh snapshot, as a first visit does."""
    shop = make_shop(edge.base_url, edge.ws_url, redis_url)
    for since in ("%C2%B2", "abc", "-5", "9" * 40):
        async with await RoomClient.connect(shop.room_url(shop.guest(), since=since, epoch="%C2%B2")) as viewer:
            assert viewer.first is not None and viewer.first["type"] == "snapshot", since


async def test_a_purchase_body_cut_off_by_the_client_logs_no_traceback(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """A buyer that hangs up mid-body (closing, or resetting the connection) is noted at debug level only: no
    traceback, nothing at warning or above, on the hot path or behind Starlette."""
    server = server_factory(LOG_LEVEL="debug")
    staff_route = (
        "PUT /api/merchants/edge-shop/blocklist HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {mint('edge-shop', Role.ADMIN)}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    heads = [_purchase_head(100), _purchase_head(100), staff_route]
    for number, head in enumerate(heads):
        async with _connection(server) as (_, writer):
            writer.write(head + b'{"quantity')
            await writer.drain()
            if number == 1:  # a reset rather than a close
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await until(lambda: server.log().count("hung up before its body was read") == len(heads), what="the hang-ups")
    log = server.log()
    assert "Traceback" not in log and "ClientDisconnect" not in log
    assert not [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line or "ERROR:" in line]


# --- F13: /metrics and room ids -------------------------------------------------------------------


def test_metrics_are_served_only_with_the_metrics_token(edge: ServerProcess) -> None:
    """/metrics without a token, with a wrong one or another scheme is 401; with METRICS_TOKEN it is the metrics."""
    url = f"{edge.base_url}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {edge.metrics_token}"}):
        answer = httpx.get(url, headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_token", headers
        assert "livecart_" not in answer.text
    assert httpx.get(url, params={"token": edge.metrics_token}).status_code == 401  # the header only
    answer = httpx.get(url, headers=edge.metrics_headers)
    assert answer.status_code == 200 and "livecart_connections" in answer.text


def test_metrics_are_off_without_a_metrics_token(server_factory: Callable[..., ServerProcess]) -> None:
    """A server without METRICS_TOKEN answers /metrics 404, saying what to set."""
    closed = server_factory(METRICS_TOKEN="")
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer anything"}):
        answer = httpx.get(f"{closed.base_url}/metrics", headers=headers)
        assert answer.status_code == 404 and "METRICS_TOKEN" in answer.json()["error"]["message"], headers


def test_room_ids_are_the_servers_so_merchants_cannot_squat_or_collide(edge: ServerProcess, redis_url: str) -> None:
    """A room body with an `id` is refused (400, nothing created); two merchants creating rooms of the same title get
    rooms of their own, under ids the server picked."""
    shops = [make_shop(edge.base_url, edge.ws_url, redis_url) for _ in range(2)]
    created = []
    with httpx.Client(base_url=edge.base_url) as http:
        for shop in shops:
            rooms = f"/api/merchants/{shop.merchant_id}/rooms"
            squat = http.post(rooms, headers=auth(shop.admin), json={"id": "big-sale", "title": "Big sale"})
            assert squat.status_code == 400 and "'id'" in squat.json()["error"]["message"]
            answer = http.post(rooms, headers=auth(shop.admin), json={"title": "Big sale"})
            assert answer.status_code == 201
            created.append(answer.json())
            listed = {room["id"] for room in http.get(rooms, headers=auth(shop.admin)).json()}
            assert listed == {shop.room_id, answer.json()["id"]}
        assert http.get("/api/rooms/big-sale").status_code == 404
    first, second = created
    assert first["id"] != second["id"] and all(room["id"].startswith("r_") for room in created)
    assert [room["merchant_id"] for room in created] == [shop.merchant_id for shop in shops]
