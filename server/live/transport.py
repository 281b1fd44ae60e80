"""The room WebSocket: check who connects, send the snapshot (or what was missed), then read commands."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

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


def _int_param(websocket: WebSocket, name: str) -> int | None:
    raw = websocket.query_params.get(name)
    return int(raw) if raw is not None and raw.isascii() and raw.isdigit() else None


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
    """GET /ws/rooms/{room_id}[?since=<offset>&epoch=<epoch>], then the auth frame (an ASGI app: server.app.LiveCart)"""
    websocket = WebSocket(scope, receive, send)
    node = node_of(websocket)
    room_id = websocket.path_params["room_id"]
    await websocket.accept()
    if not origin_allowed(websocket, node.settings.allowed_origins):
        await websocket.close(CloseCode.FORBIDDEN_ORIGIN, CloseCode.FORBIDDEN_ORIGIN.reason)
        return
    try:
        identity = await _authenticate(node, websocket)
    except InvalidToken as problem:
        await websocket.close(CloseCode.INVALID_TOKEN, str(problem))
        return
    except WebSocketDisconnect:
        return
    try:
        room = await node.hub.open_room(room_id)
    except UnknownRoom:
        await websocket.close(CloseCode.UNKNOWN_ROOM, CloseCode.UNKNOWN_ROOM.reason)
        return
    except STORE_ERRORS as problem:  # a TimeoutError too (an OSError)
        log.warning("room %s could not open: %s", room_id, problem)
        await websocket.close(CloseCode.TRY_AGAIN_LATER, CloseCode.TRY_AGAIN_LATER.reason)
        return
    assert room.state is not None
    role = identity.role_in(room.state.merchant_id)
    address = client_address(websocket)
    viewer = Viewer(websocket, send, identity, role, room_id, node.settings.outbox_max_events, address)
    try:
        snapshot, offset = node.hub.add(room, viewer)
    except TooManyConnections as problem:
        await websocket.close(CloseCode.TOO_MANY_CONNECTIONS, problem.message)
        return
    try:
        since = _int_param(websocket, "since")
        first = None
        if since is not None:
            first = await node.hub.recover(room, since, websocket.query_params.get("epoch", ""), offset)
        await websocket.send_text(first or snapshot)
        viewer.release()
        await _read(node, room, viewer)
    except WebSocketDisconnect:
        pass
    finally:
        node.hub.remove(viewer)
        await viewer.detach()


async def _read(node: Node, room: LocalRoom, viewer: Viewer) -> None:
    websocket = viewer.websocket
    window_start, window_count = time.monotonic(), 0
    while True:
        message = await websocket.receive()
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
            await websocket.send_text(reply)


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
