"""Routes of accounts and sessions: guests, sign-in with a one-time code or a login link, refresh, sign-out, who
am I; a merchant's staff and their sessions (admins); the sandbox messenger's inbox."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.access.accounts import check_name, destination_from
from server.access.limits import Rule
from server.access.sessions import MAX_LINK_MINUTES
from server.access.tokens import InvalidToken
from server.errors import BadRequest, Conflict, Forbidden, Unauthorized
from server.http import bearer, client_address, identify, json_body, node_of, ok, require, verify
from server.protocol import Role


def _agent(request: Request) -> str | None:
    return request.headers.get("user-agent")


async def guest(request: Request) -> Response:
    """POST /api/guest {device?}: a guest session (a few per address: LIMIT_GUESTS). `device` is the one an earlier
    answer gave this browser: bans of its guests follow it."""
    node = node_of(request)
    address = client_address(request)
    await node.limits.take(
        "too many new guests from your network", (Rule("guests", *node.settings.limit_guests), address)
    )
    body = await json_body(request, optional=True)
    device_id, device = node.tokens.device(body.get("device"))
    user = await node.accounts.create_guest(device_id)
    issued = await node.sessions.start(user, address, _agent(request))
    return ok({**issued.public(), "device": device}, 201)


async def send_code(request: Request) -> Response:
    """POST /api/sign-in/code {email | phone}: a one-time code sent there (the same answer whether or not an
    account exists)."""
    node = node_of(request)
    destination = destination_from(await json_body(request))
    settings = node.settings
    await node.limits.take(
        "too many codes asked for",
        (Rule("codes", *settings.limit_codes_destination), destination.key),
        (Rule("codes-address", *settings.limit_codes_address), client_address(request)),
    )
    await node.codes.send(destination)
    return ok({"sent_to": destination.value, "expires_in": settings.code_ttl_seconds}, 202)


async def sign_in(request: Request) -> Response:
    """POST /api/sign-in {email | phone, code}: a member's session. A guest's token in Authorization makes the guest
    that member (or merges the guest into the existing account): the guest's orders stay theirs."""
    node = node_of(request)
    body = await json_body(request)
    destination = destination_from(body)
    address = client_address(request)
    await node.limits.take(
        "too many sign-in attempts", (Rule("sign-ins", *node.settings.limit_sign_ins_address), address)
    )
    token = bearer(request)
    guest = None if token is None else verify(request, token)
    if guest is not None and not guest.guest:
        guest = None  # a member signing in again (another account, say): nothing to merge
    await node.codes.check(destination, body.get("code"))
    user = await node.accounts.sign_in(destination, None if guest is None else guest.user_id)
    issued = await node.sessions.start(user, address, _agent(request))
    if guest is not None:
        await node.sessions.revoke([guest.session_id], "signed in as a member")
    return ok(issued.public())


async def sign_in_with_link(request: Request) -> Response:
    """POST /api/sign-in/link {ticket}: the session a single-use login link (CLI or an admin) stands for."""
    body = await json_body(request)
    try:
        issued = await node_of(request).sessions.redeem(body.get("ticket"), client_address(request), _agent(request))
    except InvalidToken as problem:
        raise Unauthorized(str(problem)) from None
    return ok(issued.public())


async def refresh(request: Request) -> Response:
    """POST /api/sessions/refresh {refresh_token}: new tokens; the refresh token rotates (use the new one)."""
    body = await json_body(request)
    try:
        issued = await node_of(request).sessions.refresh(body.get("refresh_token"))
    except InvalidToken as problem:
        raise Unauthorized(str(problem)) from None
    return ok(issued.public())


async def sign_out(request: Request) -> Response:
    """POST /api/sessions/sign-out {everywhere?}: this session (or every session of the user) signed out now."""
    identity = identify(request)
    body = await json_body(request, optional=True)
    sessions = node_of(request).sessions
    if body.get("everywhere") is True:
        await sessions.revoke_user(identity.user_id, "signed out everywhere")
    else:
        await sessions.revoke([identity.session_id], "signed out")
    return Response(status_code=204)


async def me(request: Request) -> Response:
    return ok(identify(request).public())


async def inbox(request: Request) -> Response:
    """GET /api/sandbox/inbox?email=… | ?phone=…: what the sandbox messenger sent there (development only)."""
    destination = destination_from(dict(request.query_params))
    return ok({"to": destination.value, "messages": await node_of(request).messenger.inbox(destination)})


# --- a merchant's staff (admins) ------------------------------------------------------------


async def list_staff(request: Request) -> Response:
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id, frozenset({Role.ADMIN}))
    return ok([member.public() for member in await node_of(request).accounts.staff(merchant_id)])


async def add_staff(request: Request) -> Response:
    """POST /api/merchants/{m}/staff {email | phone, name, role}: that person (an account made if none) gets the
    role; they sign in with a code sent there. A staff member given another role is signed out everywhere (their
    tokens carry the old one)."""
    merchant_id = request.path_params["merchant_id"]
    admin = require(request, merchant_id, frozenset({Role.ADMIN}))
    body = await json_body(request)
    destination = destination_from(body)
    name = check_name(body.get("name"))
    try:
        role = Role(str(body.get("role")))
    except ValueError:
        raise BadRequest("'role' must be admin, host or moderator") from None
    node = node_of(request)
    before = {member.user_id: member.role for member in await node.accounts.staff(merchant_id)}
    async with node.audit.change(admin, "staff.added") as entry:
        member = await node.accounts.add_staff(merchant_id, destination, name, role, admin.user_id)
        entry.subject, entry.after = f"user:{member.user_id}", member.public()
    if before.get(member.user_id, role) is not role:
        await node.sessions.revoke_user(member.user_id, f"their role in {merchant_id} changed")
    return ok(member.public(), 201)


async def remove_staff(request: Request) -> Response:
    """DELETE /api/merchants/{m}/staff/{user_id}: no longer staff; every session of theirs signed out at once."""
    merchant_id, user_id = request.path_params["merchant_id"], request.path_params["user_id"]
    admin = require(request, merchant_id, frozenset({Role.ADMIN}))
    node = node_of(request)
    staff = await node.accounts.staff(merchant_id)
    admins = [member.user_id for member in staff if member.role is Role.ADMIN]
    if admins == [user_id]:
        raise Conflict("this is the shop's only admin: add another admin first", "last_admin")
    async with node.audit.change(admin, "staff.removed", f"user:{user_id}") as entry:
        member = await node.accounts.remove_staff(merchant_id, user_id)
        entry.before = member.public()
    await node.sessions.revoke_user(user_id, f"removed from the staff of {merchant_id}")
    return Response(status_code=204)


async def login_link(request: Request) -> Response:
    """POST /api/merchants/{m}/staff/{user_id}/login-link {minutes?}: a single-use studio login link for a staff
    member (an admin hands it over in person)."""
    merchant_id, user_id = request.path_params["merchant_id"], request.path_params["user_id"]
    admin = require(request, merchant_id, frozenset({Role.ADMIN}))
    node = node_of(request)
    minutes = (await json_body(request, optional=True)).get("minutes", node.settings.login_link_minutes)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= MAX_LINK_MINUTES:
        raise BadRequest(f"'minutes' must be a whole number from 1 to {MAX_LINK_MINUTES}")
    if user_id not in {member.user_id for member in await node.accounts.staff(merchant_id)}:
        raise Forbidden("login links are only for this shop's staff")
    ticket = await node.sessions.login_link(user_id, minutes)
    await node.audit.record(
        admin, "login_link.issued", f"user:{user_id}", after={"user_id": user_id, "minutes": minutes}
    )
    return ok({"ticket": ticket, "path": f"/studio.html#login={ticket}", "expires_in": minutes * 60}, 201)


async def staff_sessions(request: Request) -> Response:
    """GET /api/merchants/{m}/sessions: the live sessions of the shop's staff (admins)."""
    merchant_id = request.path_params["merchant_id"]
    require(request, merchant_id, frozenset({Role.ADMIN}))
    node = node_of(request)
    staff = [member.user_id for member in await node.accounts.staff(merchant_id)]
    return ok(await node.sessions.of_users(staff))


async def revoke_session(request: Request) -> Response:
    """DELETE /api/merchants/{m}/sessions/{session_id}: a staff member's session signed out now (admins)."""
    merchant_id, session_id = request.path_params["merchant_id"], request.path_params["session_id"]
    admin = require(request, merchant_id, frozenset({Role.ADMIN}))
    node = node_of(request)
    staff = {member.user_id for member in await node.accounts.staff(merchant_id)}
    live = [s for s in await node.sessions.of_users(list(staff)) if s["session_id"] == session_id]
    if not live:
        raise Forbidden("no live session of this shop's staff has that id")
    async with node.audit.change(admin, "session.revoked", f"session:{session_id}", before=live[0]):
        await node.sessions.revoke([session_id], f"revoked by an admin of {merchant_id}")
    return Response(status_code=204)


routes = [
    Route("/api/guest", guest, methods=["POST"]),
    Route("/api/sign-in/code", send_code, methods=["POST"]),
    Route("/api/sign-in", sign_in, methods=["POST"]),
    Route("/api/sign-in/link", sign_in_with_link, methods=["POST"]),
    Route("/api/sessions/refresh", refresh, methods=["POST"]),
    Route("/api/sessions/sign-out", sign_out, methods=["POST"]),
    Route("/api/me", me),
    Route("/api/sandbox/inbox", inbox),
    Route("/api/merchants/{merchant_id}/staff", list_staff),
    Route("/api/merchants/{merchant_id}/staff", add_staff, methods=["POST"]),
    Route("/api/merchants/{merchant_id}/staff/{user_id}", remove_staff, methods=["DELETE"]),
    Route("/api/merchants/{merchant_id}/staff/{user_id}/login-link", login_link, methods=["POST"]),
    Route("/api/merchants/{merchant_id}/sessions", staff_sessions),
    Route("/api/merchants/{merchant_id}/sessions/{session_id}", revoke_session, methods=["DELETE"]),
]
