"""The REST API against a real server process: tokens, products, rooms, block lists, and merchant isolation."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeSerializer

from loadtests.support import tokens
from server.access.tokens import Identity, Tokens
from server.http import MAX_BODY
from server.protocol import Role
from tests.conftest import SECRET_KEY, ServerProcess, Shop, make_shop, mint


@pytest.fixture
def api(shop: Shop) -> Iterator[httpx.Client]:
    """An HTTP client for the shop's server, with no token."""
    with httpx.Client(base_url=shop.base_url, timeout=10) as client:
        yield client


@pytest.fixture
def other(shop: Shop, server: ServerProcess, redis_url: str) -> Shop:
    """A second merchant on the same server."""
    return make_shop(server.base_url, server.ws_url, redis_url)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str, message: str = "") -> None:
    """The response is the API's error body with this status and code (and a message containing `message`)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert message in body["error"]["message"]


def products_url(shop: Shop, product_id: str | None = None) -> str:
    base = f"/api/merchants/{shop.merchant_id}/products"
    return base if product_id is None else f"{base}/{product_id}"


# --- guests and /api/me -------------------------------------------------------------


def test_guest_token_identifies_an_anonymous_viewer(api: httpx.Client) -> None:
    """POST /api/guest returns a guest's session (a token, a refresh token, a device), staff of no merchant, and
    /api/me returns the same identity."""
    created = api.post("/api/guest")
    assert created.status_code == 201
    body = created.json()
    assert body["refresh_token"] and body["device"] and body["expires_at"] > time.time()
    user = body["user"]
    assert user["guest"] is True and user["roles"] == {}
    assert user["id"].startswith("g_")
    assert user["name"] == f"Guest {user['id'][-4:].upper()}"
    me = api.get("/api/me", headers=auth(body["token"]))
    assert me.status_code == 200
    assert me.json() == user


def test_every_guest_gets_a_distinct_identity(api: httpx.Client) -> None:
    """Two guest tokens name two different users."""
    first, second = (api.post("/api/guest").json() for _ in range(2))
    assert first["token"] != second["token"]
    assert first["user"]["id"] != second["user"]["id"]


def test_guest_tokens_are_only_handed_out_by_post(api: httpx.Client) -> None:
    """GET /api/guest mints nothing (a link or a crawler cannot create identities)."""
    response = api.get("/api/guest")
    assert response.status_code in (404, 405)
    assert "token" not in response.text


def test_me_shows_a_staff_tokens_role_per_merchant(api: httpx.Client, shop: Shop) -> None:
    """/api/me with a staff token names the user's role for the merchant."""
    for token, role in ((shop.admin, "admin"), (shop.host, "host"), (shop.moderator, "moderator")):
        me = api.get("/api/me", headers=auth(token))
        assert me.status_code == 200
        assert me.json()["roles"] == {shop.merchant_id: role}


def test_token_in_the_query_string_is_ignored(api: httpx.Client, shop: Shop) -> None:
    """?token=… identifies nobody (a token in a URL ends up in logs and histories): only Authorization does."""
    assert_error(api.get("/api/me", params={"token": shop.host}), 401, "invalid_token", "a token is required")


# --- invalid tokens -----------------------------------------------------------------


def test_missing_token_is_refused_saying_one_is_required(api: httpx.Client, shop: Shop) -> None:
    """No token (or a non-Bearer Authorization header) gets 401 'a token is required'."""
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        assert_error(api.get("/api/me", headers=headers), 401, "invalid_token", "a token is required")
        assert_error(api.get(products_url(shop), headers=headers), 401, "invalid_token", "a token is required")


def test_forged_signature_is_refused(api: httpx.Client, shop: Shop) -> None:
    """A token whose signature was tampered with gets 401 saying the signature is bad."""
    payload, signature = shop.admin.rsplit(".", 1)
    forged = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert_error(api.get("/api/me", headers=auth(forged)), 401, "invalid_token", "bad signature")
    assert_error(api.get(products_url(shop), headers=auth(forged)), 401, "invalid_token", "bad signature")


def test_token_with_a_rewritten_payload_is_refused(api: httpx.Client, shop: Shop, other: Shop) -> None:
    """Swapping in another merchant's payload under the original signature gets 401."""
    _, signature = shop.host.rsplit(".", 1)
    payload, _ = other.admin.rsplit(".", 1)
    forged = f"{payload}.{signature}"
    assert_error(api.get("/api/me", headers=auth(forged)), 401, "invalid_token", "bad signature")


def test_token_signed_with_another_key_is_refused(api: httpx.Client, shop: Shop) -> None:
    """A well-formed token signed with a different secret key gets 401."""
    foreign = tokens.staff("not-the-server-key", shop.merchant_id, Role.ADMIN, "Eve")
    assert_error(api.get(products_url(shop), headers=auth(foreign)), 401, "invalid_token", "bad signature")


@pytest.mark.parametrize("garbage", ["abc", "a.b", "....", "x" * 500])
def test_garbage_token_is_refused(api: httpx.Client, garbage: str) -> None:
    """A string that is not a token at all gets 401, not a server error."""
    assert_error(api.get("/api/me", headers=auth(garbage)), 401, "invalid_token", "not valid")


def test_expired_token_is_refused_saying_it_expired(api: httpx.Client, shop: Shop) -> None:
    """A correctly signed token past its expiry gets 401 'the token has expired'."""
    old = Identity("u_old", "Old", "ses_old", int(time.time()) - 10, guest=False, roles={shop.merchant_id: Role.ADMIN})
    expired = Tokens(SECRET_KEY).issue(old)
    assert_error(api.get("/api/me", headers=auth(expired)), 401, "invalid_token", "expired")
    assert_error(api.get(products_url(shop), headers=auth(expired)), 401, "invalid_token", "expired")


@pytest.mark.parametrize(
    "payload",
    [
        {"sub": "u", "name": "X", "sid": "s", "roles": {"m": "superuser"}, "exp": 2**31},
        {"sub": "u", "name": "X", "sid": "s", "roles": ["admin"], "exp": 2**31},
        {"sub": "u", "name": "X", "sid": "s"},
        {"sub": "u", "name": "X", "exp": 2**31},
        {"sub": "u", "name": "X", "sid": "s", "exp": "soon"},
        ["not", "an", "object"],
    ],
)
def test_signed_but_malformed_token_is_refused(api: httpx.Client, payload: Any) -> None:
    """A token with a valid signature but an unknown role, no expiry, no session or a bad shape gets 401
    'malformed'."""
    token = URLSafeSerializer(SECRET_KEY, salt="livecart.access.v2").dumps(payload)
    assert_error(api.get("/api/me", headers=auth(token)), 401, "invalid_token", "malformed")


# --- products -----------------------------------------------------------------------


def test_admin_creates_reads_updates_and_deletes_a_product(api: httpx.Client, shop: Shop) -> None:
    """The full product life cycle: 201 on create, then read, partial update, delete (204) and 404 after."""
    headers = auth(shop.admin)
    created = api.post(
        products_url(shop),
        headers=headers,
        json={"id": "lamp", "title": "  Desk lamp ", "price": 2500, "currency": "EUR", "image_url": "/img/lamp.svg"},
    )
    assert created.status_code == 201
    expected = {
        "id": "lamp",
        "merchant_id": shop.merchant_id,
        "title": "Desk lamp",
        "image_url": "/img/lamp.svg",
        "price": 2500,
        "currency": "EUR",
    }
    assert created.json() == expected
    assert api.get(products_url(shop, "lamp"), headers=headers).json() == expected
    listed = api.get(products_url(shop), headers=headers).json()
    assert [p["id"] for p in listed] == sorted([*shop.products, "lamp"])

    updated = api.put(products_url(shop, "lamp"), headers=headers, json={"price": 1999})
    assert updated.status_code == 200
    assert updated.json() == {**expected, "price": 1999}
    assert api.get(products_url(shop, "lamp"), headers=headers).json()["price"] == 1999

    deleted = api.delete(products_url(shop, "lamp"), headers=headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(api.get(products_url(shop, "lamp"), headers=headers), 404, "not_found", "lamp")
    assert_error(api.delete(products_url(shop, "lamp"), headers=headers), 404, "not_found")
    assert_error(api.put(products_url(shop, "lamp"), headers=headers, json={"price": 1}), 404, "not_found")


def test_product_without_id_gets_a_generated_one(api: httpx.Client, shop: Shop) -> None:
    """POST without 'id' creates the product under a fresh p_… id, with USD and no image by default."""
    created = api.post(products_url(shop), headers=auth(shop.host), json={"title": "Socks", "price": 0})
    assert created.status_code == 201
    body = created.json()
    assert body["id"].startswith("p_")
    assert body["currency"] == "USD"
    assert body["image_url"] == ""
    assert api.get(products_url(shop, body["id"]), headers=auth(shop.host)).json() == body


def test_duplicate_product_id_is_refused_with_409(api: httpx.Client, shop: Shop) -> None:
    """Creating a product under an existing id is 409 'exists', and the existing product is unchanged."""
    before = api.get(products_url(shop, "p0"), headers=auth(shop.admin)).json()
    response = api.post(products_url(shop), headers=auth(shop.admin), json={"id": "p0", "title": "Other", "price": 1})
    assert_error(response, 409, "exists", "p0")
    assert api.get(products_url(shop, "p0"), headers=auth(shop.admin)).json() == before


BAD_PRODUCTS: list[tuple[dict[str, Any], str]] = [
    ({"price": 100}, "'title' must be 1-120 characters"),
    ({"title": "", "price": 100}, "'title' must be 1-120 characters"),
    ({"title": "   ", "price": 100}, "'title' must be 1-120 characters"),
    ({"title": "x" * 121, "price": 100}, "'title' must be 1-120 characters"),
    ({"title": 42, "price": 100}, "'title' must be 1-120 characters"),
    ({"title": "Hat"}, "'price' must be a whole number"),
    ({"title": "Hat", "price": -1}, "'price' must be a whole number"),
    ({"title": "Hat", "price": 100_000_001}, "'price' must be a whole number"),
    ({"title": "Hat", "price": 9.99}, "'price' must be a whole number"),
    ({"title": "Hat", "price": "100"}, "'price' must be a whole number"),
    ({"title": "Hat", "price": True}, "'price' must be a whole number"),
    ({"title": "Hat", "price": 100, "currency": "XYZ"}, "'currency' must be one of"),
    ({"title": "Hat", "price": 100, "currency": "usd"}, "'currency' must be one of"),
    ({"title": "Hat", "price": 100, "currency": None}, "'currency' must be one of"),
    ({"title": "Hat", "price": 100, "image_url": "javascript:alert(1)"}, "'image_url' must be an http(s) URL"),
    ({"title": "Hat", "price": 100, "image_url": "ftp://example.com/a.png"}, "'image_url' must be an http(s) URL"),
    ({"title": "Hat", "price": 100, "image_url": "https://x/" + "a" * 500}, "'image_url' must be an http(s) URL"),
    ({"title": "Hat", "price": 100, "image_url": 7}, "'image_url' must be an http(s) URL"),
    ({"id": "Bad Id!", "title": "Hat", "price": 100}, "product id must be 1-48 lowercase letters"),
    ({"id": "", "title": "Hat", "price": 100}, "product id must be 1-48 lowercase letters"),
    ({"id": 5, "title": "Hat", "price": 100}, "product id must be 1-48 lowercase letters"),
    ({"id": "a" * 49, "title": "Hat", "price": 100}, "product id must be 1-48 lowercase letters"),
]


@pytest.mark.parametrize(("body", "message"), BAD_PRODUCTS)
def test_invalid_product_is_refused_saying_why(
    api: httpx.Client, shop: Shop, body: dict[str, Any], message: str
) -> None:
    """An invalid product body gets 400 bad_request naming the field, and nothing is created."""
    before = api.get(products_url(shop), headers=auth(shop.admin)).json()
    assert_error(api.post(products_url(shop), headers=auth(shop.admin), json=body), 400, "bad_request", message)
    assert api.get(products_url(shop), headers=auth(shop.admin)).json() == before


def test_invalid_update_is_refused_and_changes_nothing(api: httpx.Client, shop: Shop) -> None:
    """PUT with an invalid field gets 400 and the product keeps its values."""
    url = products_url(shop, "p1")
    before = api.get(url, headers=auth(shop.admin)).json()
    for body, message in (
        ({"price": -5}, "'price'"),
        ({"currency": "DOGE"}, "'currency'"),
        ({"title": ""}, "'title'"),
        ({"image_url": "data:image/png;base64,AAAA"}, "'image_url'"),
    ):
        assert_error(api.put(url, headers=auth(shop.admin), json=body), 400, "bad_request", message)
    assert api.get(url, headers=auth(shop.admin)).json() == before


def test_update_cannot_move_a_product_to_another_id_or_merchant(api: httpx.Client, shop: Shop, other: Shop) -> None:
    """'id' and 'merchant_id' in a PUT body are ignored: the product stays where its URL says."""
    updated = api.put(
        products_url(shop, "p2"),
        headers=auth(shop.admin),
        json={"id": "stolen", "merchant_id": other.merchant_id, "title": "Renamed"},
    )
    assert updated.status_code == 200
    assert updated.json()["id"] == "p2"
    assert updated.json()["merchant_id"] == shop.merchant_id
    assert updated.json()["title"] == "Renamed"
    assert_error(api.get(products_url(shop, "stolen"), headers=auth(shop.admin)), 404, "not_found")
    assert [p["id"] for p in api.get(products_url(other), headers=auth(other.admin)).json()] == other.products


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (b"{not json", "bad_json", "not valid JSON"),
        (b"", "bad_json", "not valid JSON"),
        (b"\xff\xfe\x00", "bad_json", "not valid JSON"),
        (b"[1, 2]", "bad_request", "must be a JSON object"),
        (b'"text"', "bad_request", "must be a JSON object"),
        (b"null", "bad_request", "must be a JSON object"),
        (b"12", "bad_request", "must be a JSON object"),
    ],
)
def test_body_that_is_not_a_json_object_is_refused(
    api: httpx.Client, shop: Shop, content: bytes, code: str, message: str
) -> None:
    """Bad JSON gets 400 bad_json; JSON that is not an object gets 400 bad_request; on every write endpoint."""
    headers = {**auth(shop.admin), "Content-Type": "application/json"}
    m = shop.merchant_id
    for method, url in (
        ("POST", products_url(shop)),
        ("PUT", products_url(shop, "p0")),
        ("POST", f"/api/merchants/{m}/rooms"),
        ("PUT", f"/api/merchants/{m}/blocklist"),
        ("POST", f"/api/merchants/{m}/staff"),
    ):
        assert_error(api.request(method, url, headers=headers, content=content), 400, code, message)


def test_oversized_body_is_refused_with_413(api: httpx.Client, shop: Shop) -> None:
    """A body over the 64 KiB limit gets 413 too_large and creates nothing; one just under it is accepted."""
    title = "x" * 100
    padding = "p" * (MAX_BODY + 1)
    response = api.post(products_url(shop), headers=auth(shop.admin), json={"title": title, "price": 1, "pad": padding})
    assert_error(response, 413, "too_large", str(MAX_BODY))
    assert len(api.get(products_url(shop), headers=auth(shop.admin)).json()) == len(shop.products)
    fits = api.post(
        products_url(shop), headers=auth(shop.admin), json={"title": title, "price": 1, "pad": "p" * (MAX_BODY - 300)}
    )
    assert fits.status_code == 201


def test_oversized_body_without_content_length_is_refused_with_413(api: httpx.Client, shop: Shop) -> None:
    """A chunked body (no Content-Length) is cut off at the limit too: 413, not read to the end."""

    def chunks() -> Iterator[bytes]:
        yield b'{"title": "Hat", "price": 1, "pad": "'
        for _ in range(40):
            yield b"p" * 4096
        yield b'"}'

    response = api.post(
        products_url(shop), headers={**auth(shop.admin), "Content-Type": "application/json"}, content=chunks()
    )
    assert_error(response, 413, "too_large")
    assert len(api.get(products_url(shop), headers=auth(shop.admin)).json()) == len(shop.products)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_oversized_body_is_refused_without_reading_the_rest(shop: Shop, framing: str) -> None:
    """The server answers 413 once the limit is passed, without waiting for (or buffering) the rest of the body."""
    port = int(shop.base_url.rsplit(":", 1)[1])
    part = b"p" * (MAX_BODY + 4096)
    if framing == "chunked":
        length_header, payload = b"Transfer-Encoding: chunked", b"%x\r\n%s\r\n" % (len(part), part)
    else:
        length_header, payload = b"Content-Length: %d" % (100 * MAX_BODY), part
    head = b"\r\n".join(
        [
            f"POST {products_url(shop)} HTTP/1.1".encode(),
            b"Host: 127.0.0.1",
            f"Authorization: Bearer {shop.admin}".encode(),
            b"Content-Type: application/json",
            length_header,
            b"",
            b"",
        ]
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + payload)  # and never the rest of the declared body
        reply = b""
        while b"\r\n\r\n" not in reply:
            received = sock.recv(65536)
            assert received, "connection closed without a response"
            reply += received
    assert reply.startswith(b"HTTP/1.1 413 ")


def test_moderator_can_read_but_not_change_products(api: httpx.Client, shop: Shop) -> None:
    """A moderator may list and read products, but creating, updating or deleting one is 403."""
    headers = auth(shop.moderator)
    assert api.get(products_url(shop), headers=headers).status_code == 200
    assert api.get(products_url(shop, "p0"), headers=headers).status_code == 200
    before = api.get(products_url(shop), headers=headers).json()
    assert_error(api.post(products_url(shop), headers=headers, json={"title": "Hat", "price": 1}), 403, "forbidden")
    assert_error(api.put(products_url(shop, "p0"), headers=headers, json={"price": 1}), 403, "forbidden")
    assert_error(api.delete(products_url(shop, "p0"), headers=headers), 403, "forbidden")
    assert api.get(products_url(shop), headers=headers).json() == before


def test_host_can_manage_products(api: httpx.Client, shop: Shop) -> None:
    """A host (a presenter) may create, update and delete products."""
    headers = auth(shop.host)
    assert (
        api.post(products_url(shop), headers=headers, json={"id": "cap", "title": "Cap", "price": 5}).status_code == 201
    )
    assert api.put(products_url(shop, "cap"), headers=headers, json={"title": "Blue cap"}).json()["title"] == "Blue cap"
    assert api.delete(products_url(shop, "cap"), headers=headers).status_code == 204


def test_viewer_token_may_not_read_products_through_the_staff_api(api: httpx.Client, shop: Shop) -> None:
    """A guest token gets 403 on a merchant's product list."""
    assert_error(api.get(products_url(shop), headers=auth(shop.guest())), 403, "forbidden")


# --- rooms --------------------------------------------------------------------------


def test_room_is_created_listed_and_public(api: httpx.Client, shop: Shop) -> None:
    """POST creates a scheduled, offline room; it is in the merchant's list; anyone may GET it without a token."""
    rooms_url = f"/api/merchants/{shop.merchant_id}/rooms"
    created = api.post(rooms_url, headers=auth(shop.host), json={"title": "  Friday drop  "})
    assert created.status_code == 201
    room = created.json()
    assert room["id"].startswith("r_")
    assert room == {
        "id": room["id"],
        "merchant_id": shop.merchant_id,
        "title": "Friday drop",
        "status": "scheduled",
        "stream": "offline",
    }
    listed = api.get(rooms_url, headers=auth(shop.moderator))
    assert listed.status_code == 200
    assert sorted(r["id"] for r in listed.json()) == sorted([shop.room_id, room["id"]])
    public = api.get(f"/api/rooms/{room['id']}")
    assert public.status_code == 200
    assert public.json() == room


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'title' must be a string"),
        ({"title": 5}, "'title' must be a string"),
        ({"title": ""}, "'title' must be 1-120 characters"),
        ({"title": " "}, "'title' must be 1-120 characters"),
        ({"title": "t" * 121}, "'title' must be 1-120 characters"),
        ({"id": "show", "title": "Show"}, "a room's 'id' is chosen by the server"),
        ({"id": 7, "title": "Show"}, "a room's 'id' is chosen by the server"),
    ],
)
def test_invalid_room_is_refused(api: httpx.Client, shop: Shop, body: dict[str, Any], message: str) -> None:
    """An invalid room body gets 400 bad_request saying why, and no room is added."""
    rooms_url = f"/api/merchants/{shop.merchant_id}/rooms"
    assert_error(api.post(rooms_url, headers=auth(shop.admin), json=body), 400, "bad_request", message)
    assert [r["id"] for r in api.get(rooms_url, headers=auth(shop.admin)).json()] == [shop.room_id]


def test_moderator_may_not_create_rooms(api: httpx.Client, shop: Shop) -> None:
    """Creating a room is for admins and hosts: a moderator gets 403."""
    response = api.post(f"/api/merchants/{shop.merchant_id}/rooms", headers=auth(shop.moderator), json={"title": "X"})
    assert_error(response, 403, "forbidden")


def test_unknown_room_is_404(api: httpx.Client) -> None:
    """GET /api/rooms/{id} for a room that does not exist is 404 not_found naming it."""
    assert_error(api.get("/api/rooms/no-such-room"), 404, "not_found", "no-such-room")


# --- staff ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"email": "kim@shop.example", "role": "viewer", "name": "V"},
        {"email": "kim@shop.example", "role": "owner", "name": "V"},
        {"email": "kim@shop.example", "role": None, "name": "V"},
        {"email": "kim@shop.example", "role": ["host"], "name": "V"},
        {"email": "kim@shop.example", "role": "host"},
        {"email": "kim@shop.example", "role": "host", "name": ""},
        {"email": "kim@shop.example", "role": "host", "name": "n" * 61},
        {"email": "kim@shop.example", "role": "host", "name": 5},
        {"role": "host", "name": "V"},
        {"email": ["kim@shop.example"], "role": "host", "name": "V"},
        {"email": "kim", "role": "host", "name": "V"},
        {"email": "kim@shop.example", "phone": "+14155550100", "role": "host", "name": "V"},
    ],
)
def test_adding_staff_refuses_a_viewer_role_a_bad_name_or_address(
    api: httpx.Client, shop: Shop, body: dict[str, Any]
) -> None:
    """Adding staff with a viewer (or unknown) role, without a 1-60 character name, or without exactly one valid
    email or phone is 400 bad_request, and adds no one."""
    response = api.post(f"/api/merchants/{shop.merchant_id}/staff", headers=auth(shop.admin), json=body)
    assert_error(response, 400, "bad_request")
    assert api.get(f"/api/merchants/{shop.merchant_id}/staff", headers=auth(shop.admin)).json() == []


def test_only_an_admin_manages_staff(api: httpx.Client, shop: Shop) -> None:
    """A host, a moderator and a guest each get 403 adding staff, listing staff or their sessions."""
    url = f"/api/merchants/{shop.merchant_id}/staff"
    body = {"email": "sneaky@shop.example", "role": "admin", "name": "Sneaky"}
    for token in (shop.host, shop.moderator, shop.guest()):
        assert_error(api.post(url, headers=auth(token), json=body), 403, "forbidden")
        assert_error(api.get(url, headers=auth(token)), 403, "forbidden")
        assert_error(api.get(f"/api/merchants/{shop.merchant_id}/sessions", headers=auth(token)), 403, "forbidden")


# --- block lists --------------------------------------------------------------------


def test_blocklist_is_stored_lowercased_sorted_and_unique(api: httpx.Client, shop: Shop) -> None:
    """PUT words replaces the list, lowercased and de-duplicated; GET returns it sorted."""
    url = f"/api/merchants/{shop.merchant_id}/blocklist"
    assert api.get(url, headers=auth(shop.admin)).json() == {"words": []}
    put = api.put(url, headers=auth(shop.admin), json={"words": ["Spam", "SCAM", "spam", "Ünïcode"]})
    assert put.status_code == 200
    assert put.json() == {"words": ["scam", "spam", "ünïcode"]}
    assert api.get(url, headers=auth(shop.host)).json() == {"words": ["scam", "spam", "ünïcode"]}
    assert api.put(url, headers=auth(shop.admin), json={"words": ["fake"]}).json() == {"words": ["fake"]}
    assert api.put(url, headers=auth(shop.admin), json={"words": []}).json() == {"words": []}


def test_moderator_maintains_the_blocklist(api: httpx.Client, shop: Shop) -> None:
    """Moderators keep the chat clean: they may read and replace the block list."""
    url = f"/api/merchants/{shop.merchant_id}/blocklist"
    assert api.put(url, headers=auth(shop.moderator), json={"words": ["Rude"]}).json() == {"words": ["rude"]}
    assert api.get(url, headers=auth(shop.moderator)).json() == {"words": ["rude"]}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"words": "spam"},
        {"words": None},
        {"words": {"spam": 1}},
        {"words": ["ok", ""]},
        {"words": ["ok", 5]},
        {"words": ["ok", None]},
        {"words": ["w" * 51]},
        {"words": [f"w{i}" for i in range(501)]},
    ],
)
def test_invalid_blocklist_is_refused_and_the_old_one_kept(api: httpx.Client, shop: Shop, body: dict[str, Any]) -> None:
    """A block list that is not up to 500 strings of 1-50 characters gets 400 and leaves the old list."""
    url = f"/api/merchants/{shop.merchant_id}/blocklist"
    api.put(url, headers=auth(shop.admin), json={"words": ["keep"]}).raise_for_status()
    assert_error(api.put(url, headers=auth(shop.admin), json=body), 400, "bad_request", "'words' must be a list")
    assert api.get(url, headers=auth(shop.admin)).json() == {"words": ["keep"]}


def test_guest_may_not_read_the_blocklist(api: httpx.Client, shop: Shop) -> None:
    """The block list is staff-only: a guest gets 403."""
    assert_error(api.get(f"/api/merchants/{shop.merchant_id}/blocklist", headers=auth(shop.guest())), 403, "forbidden")


# --- merchants and isolation --------------------------------------------------------


def test_staff_read_their_merchant(api: httpx.Client, shop: Shop) -> None:
    """GET /api/merchants/{m} returns the merchant's id and name to its staff."""
    for token in (shop.admin, shop.host, shop.moderator):
        merchant = api.get(f"/api/merchants/{shop.merchant_id}", headers=auth(token))
        assert merchant.status_code == 200
        assert merchant.json()["id"] == shop.merchant_id
        assert merchant.json()["name"] == f"Shop {shop.merchant_id}"
        assert int(merchant.json()["created"]) <= time.time()


def test_unknown_merchant_is_404_for_a_token_of_that_merchant(api: httpx.Client) -> None:
    """A validly signed admin token for a merchant that does not exist gets 404 on the merchant."""
    token = mint("ghost-merchant", Role.ADMIN)
    assert_error(api.get("/api/merchants/ghost-merchant", headers=auth(token)), 404, "not_found", "ghost-merchant")


def snapshot(api: httpx.Client, shop: Shop) -> dict[str, Any]:
    """Everything the API shows of a merchant, read with its own admin token."""
    headers = auth(shop.admin)
    m = shop.merchant_id
    result = {
        "merchant": api.get(f"/api/merchants/{m}", headers=headers).json(),
        "products": api.get(f"/api/merchants/{m}/products", headers=headers).json(),
        "rooms": api.get(f"/api/merchants/{m}/rooms", headers=headers).json(),
        "blocklist": api.get(f"/api/merchants/{m}/blocklist", headers=headers).json(),
    }
    result["room"] = api.get(f"/api/rooms/{shop.room_id}").json()
    return result


def test_staff_of_one_merchant_get_403_on_every_endpoint_of_another(api: httpx.Client, shop: Shop, other: Shop) -> None:
    """An admin, host or moderator of merchant A gets 403 on each of merchant B's endpoints; B's data is unchanged."""
    api.put(f"/api/merchants/{other.merchant_id}/blocklist", headers=auth(other.admin), json={"words": ["b"]})
    before = snapshot(api, other)
    b = f"/api/merchants/{other.merchant_id}"
    product = {"id": "intruder", "title": "Planted", "price": 1}
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", b, None),
        ("GET", f"{b}/products", None),
        ("POST", f"{b}/products", product),
        ("GET", f"{b}/products/p0", None),
        ("PUT", f"{b}/products/p0", {"price": 1}),
        ("DELETE", f"{b}/products/p0", None),
        ("GET", f"{b}/products/missing", None),
        ("GET", f"{b}/rooms", None),
        ("POST", f"{b}/rooms", {"title": "Planted"}),
        ("GET", f"{b}/blocklist", None),
        ("PUT", f"{b}/blocklist", {"words": []}),
        ("GET", f"{b}/staff", None),
        ("POST", f"{b}/staff", {"email": "m@evil.example", "role": "admin", "name": "Mallory"}),
        ("GET", f"{b}/sessions", None),
    ]
    for token in (shop.admin, shop.host, shop.moderator):
        for method, url, body in calls:
            response = api.request(method, url, headers=auth(token), json=body)
            assert_error(response, 403, "forbidden", "you may not do that for this merchant")
    assert snapshot(api, other) == before


def test_forbidden_is_decided_before_the_body_is_read(api: httpx.Client, shop: Shop, other: Shop) -> None:
    """Another merchant's staff get 403 even for a malformed or oversized body: nothing about B is parsed."""
    url = f"/api/merchants/{other.merchant_id}/products"
    assert_error(api.post(url, headers=auth(shop.admin), content=b"{broken"), 403, "forbidden")
    assert_error(api.post(url, headers=auth(shop.admin), content=b"x" * (MAX_BODY + 10)), 403, "forbidden")


def test_a_body_of_another_content_type_is_refused_with_415(api: httpx.Client, shop: Shop) -> None:
    """A JSON endpoint given a form or text body says 415 with the type it takes, and creates nothing."""
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        response = api.post(
            products_url(shop),
            headers={**auth(shop.admin), "Content-Type": content_type},
            content=b'{"title": "Hat", "price": 1}',
        )
        assert_error(response, 415, "unsupported_media_type", "application/json")
    assert len(api.get(products_url(shop), headers=auth(shop.admin)).json()) == len(shop.products)
    sent = api.post(
        products_url(shop),
        headers={**auth(shop.admin), "Content-Type": "application/json; charset=utf-8"},
        content=b'{"title": "Hat", "price": 1}',
    )
    assert sent.status_code == 201
