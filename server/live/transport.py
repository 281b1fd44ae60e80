"""The room WebSocket: check who connects, send the snapshot (or what was missed), then read commands."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import parse_qsl, urlsplit

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from server import metrics
from server.access.tokens import Identity, InvalidToken
from server.errors import STORE_ERRORS, DomainError
from server.http import client_address, node_of
from server.live.commands import HANDLERS
from server.live.hub import LocalRoom, TooManyConnections
from server.live.outbox import Viewer
from server.node import Node
from server.protocol import CloseCode, ErrorCode, ProtocolError, ack, error, parse_auth, parse_command
from server.rooms.record import UnknownRoom
from server.webserver import socket_of, text_frame

log = logging.getLogger("livecart.transport")

FLOOD_MESSAGES = 20  # per FLOOD_SECONDS; past that the connection is closed
FLOOD_SECONDS = 2.0


def origin_allowed(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the server's own origin, or one listed in ALLOWED_ORIGINS."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if origin in allowed or "*" in allowed:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


def _resume(websocket: WebSocket) -> tuple[int | None, str]:
    """The `since` (None when absent or not a whole number) and `epoch` a returning client sent in the URL's query,
    read straight from it (a reconnect storm runs this thousands of times a second)."""
    query = websocket.scope["query_string"]
    if not query:
        return None, ""
    params = dict(parse_qsl(query.decode("latin-1")))
    since = params.get("since", "")
    return (int(since) if since.isascii() and since.isdigit() else None), params.get("epoch", "")


async def _authenticate(node: Node, websocket: WebSocket) -> Identity:
    """The identity of the first frame's token, sent within AUTH_TIMEOUT_MS; InvalidToken otherwise."""
    try:
        async with asyncio.timeout(node.settings.auth_timeout_ms / 1000):
            message = await websocket.receive()
    except TimeoutError:
        raise InvalidToken('send {"type": "auth", "token": "…"} first') from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    try:
        token = parse_auth(message.get("text") or message.get("bytes") or b"")
    except ProtocolError as problem:
        raise InvalidToken(problem.message) from None
    return node.revocations.check(node.tokens.verify(token))


async def room_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """GET /ws/rooms/{room_id}[?since=<offset>&epoch=<epoch>], then the auth frame (an ASGI app: server.app.LiveCart)

    A room socket stays open for hours, idle most of them, thousands to a process: what only its
    start needs (Starlette's WebSocket and what it caches, the first frame, the request's headers)
    is let go once the viewer is in (_join); what stays is the Viewer and this one frame reading
    the raw ASGI receive (docs/benchmarks.md: memory per idle viewer)."""
    try:
        joined = await _join(WebSocket(scope, receive, send))
    except WebSocketDisconnect:
        return
    if joined is None:
        return
    node, room, viewer = joined
    try:
        await _read(node, room, viewer, receive, send)
    except OSError:  # uvicorn's ClientDisconnected: the client left while a reply was being sent
        pass
    finally:
        node.hub.remove(viewer)
        await viewer.detach()


async def _join(websocket: WebSocket) -> tuple[Node, LocalRoom, Viewer] | None:
    """Everything a room socket does once: accept, check, authenticate, join the hub, send the first frame.
    The viewer, in and released; None when it was refused (and closed)."""
    node = node_of(websocket)
    room_id = websocket.path_params["room_id"]
    await websocket.accept()
    if not origin_allowed(websocket, node.settings.allowed_origins):
        await websocket.close(CloseCode.FORBIDDEN_ORIGIN, CloseCode.FORBIDDEN_ORIGIN.reason)
        return None
    try:
        identity = await _authenticate(node, websocket)
    except InvalidToken as problem:
        await websocket.close(CloseCode.INVALID_TOKEN, str(problem))
        return None
    try:
        room = await node.hub.open_room(room_id)
    except UnknownRoom:
        await websocket.close(CloseCode.UNKNOWN_ROOM, CloseCode.UNKNOWN_ROOM.reason)
        return None
    except STORE_ERRORS as problem:  # a TimeoutError too (an OSError)
        log.warning("room %s could not open: %s", room_id, problem)
        await websocket.close(CloseCode.TRY_AGAIN_LATER, CloseCode.TRY_AGAIN_LATER.reason)
        return None
    assert room.state is not None
    role = identity.role_in(room.state.merchant_id)
    address = client_address(websocket)
    websocket.scope["headers"] = []  # read (origin, host): the rest of the socket's life needs none of them
    viewer = Viewer(socket_of(websocket.scope), identity, role, room_id, node.settings.outbox_max_bytes, address)
    try:
        snapshot, offset = node.hub.add(room, viewer)
    except TooManyConnections as problem:
        await websocket.close(CloseCode.TOO_MANY_CONNECTIONS, problem.message)
        return None
    try:
        since, epoch = _resume(websocket)
        first = None if since is None else await node.hub.recover(room, since, epoch, offset)
        viewer.socket.write(text_frame((first or snapshot).encode()))  # as the hub's frames go: no ASGI send
    except BaseException:
        node.hub.remove(viewer)
        await viewer.detach()
        raise
    viewer.release()
    return node, room, viewer


async def _read(node: Node, room: LocalRoom, viewer: Viewer, receive: Receive, send: Send) -> None:
    window_start, window_count = time.monotonic(), 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        now = time.monotonic()
        if now - window_start > FLOOD_SECONDS:
            window_start, window_count = now, 0
        window_count += 1
        if window_count > FLOOD_MESSAGES:
            log.info("%s closed: flooding", viewer.log_prefix)
            viewer.stop(CloseCode.FLOODING)
            return
        if viewer.identity.expires < time.time():  # the sweep (server.live.hub) may not have come by yet
            viewer.stop(CloseCode.INVALID_TOKEN)
            return
        raw: str | bytes = message.get("text") or message.get("bytes") or b""
        reply = await handle(node, room, viewer, raw)
        if viewer.closing is not None:
            return  # the server closed it meanwhile (signed out, too slow): nothing more is sent
        if reply is not None:
            await send({"type": "websocket.send", "text": reply})


async def handle(node: Node, room: LocalRoom, viewer: Viewer, raw: str | bytes) -> str | None:
    """Run one client message; return the ack or error to send back (None: nothing to say)."""
    request_id = None
    try:
        command = parse_command(raw, viewer.role)
        request_id = command.id
        metrics.EVENTS_IN.labels(command.type).inc()
        result = await HANDLERS[command.type](node, room, viewer, command)
    except DomainError as problem:  # a ProtocolError from parsing carries the frame's id itself
        code = ErrorCode(problem.code) if problem.code in set(ErrorCode) else ErrorCode.BAD_REQUEST
        if request_id is None and isinstance(problem, ProtocolError):
            request_id = problem.request_id
        metrics.PROTOCOL_ERRORS.labels(code.value).inc()
        return error(code, problem.message, request_id)
    except STORE_ERRORS as problem:
        log.warning("%s command failed, store unavailable: %s", viewer.log_prefix, problem)
        metrics.PROTOCOL_ERRORS.labels(ErrorCode.UNAVAILABLE.value).inc()
        return error(
            ErrorCode.UNAVAILABLE,
            "the server cannot reach its store right now; nothing was changed, try again",
            request_id,
        )
    if request_id is None and result is None:
        return None
    return ack(request_id, **(result or {}))
