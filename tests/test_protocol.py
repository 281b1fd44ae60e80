"""The room message protocol as pure functions: parsing client frames, building server frames, and its JS mirror."""

from __future__ import annotations

import shutil
import subprocess
import time

import orjson
import pytest

from server.protocol import (
    COMMANDS,
    MAX_BAG,
    MAX_LIKES_PER_MESSAGE,
    MAX_MUTE_SECONDS,
    MAX_SLOW_MODE_SECONDS,
    PRESENTERS,
    STAFF,
    Command,
    ErrorCode,
    ProtocolError,
    Role,
    bus_message,
    bus_private,
    coalesce_key,
    encode,
    event,
    parse_bus_message,
    parse_command,
    recovered,
    snapshot,
    wire,
    with_offset,
)
from tests.conftest import ROOT


def frame(**message: object) -> str:
    return orjson.dumps(message).decode()


def refusal(raw: str | bytes, role: Role = Role.ADMIN) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_command(raw, role)
    return caught.value


# --- accepted frames ----------------------------------------------------------------


def test_valid_chat_message_parses_into_a_command() -> None:
    """A well-formed chat.send becomes a Command with its type, fields and id."""
    command = parse_command(frame(type="chat.send", text="hello", id="c1"), Role.VIEWER)
    assert command == Command("chat.send", {"text": "hello"}, "c1")


def test_bytes_frames_parse_like_text_frames() -> None:
    """A binary frame carrying the same JSON is parsed the same way."""
    command = parse_command(frame(type="like", count=3).encode(), Role.VIEWER)
    assert command == Command("like", {"count": 3}, None)


def test_command_keeps_only_its_spec_fields() -> None:
    """Fields a command does not define are dropped, never passed to the handler."""
    command = parse_command(frame(type="like", count=1, admin=True, extra={"x": 1}), Role.VIEWER)
    assert command.fields == {"count": 1}


@pytest.mark.parametrize("request_id", ["abc", 0, 7, 2**40])
def test_string_or_integer_id_is_echoed(request_id: object) -> None:
    """The frame's id (a string or a whole number, including 0) is kept for the ack."""
    assert parse_command(frame(type="product.unpin", id=request_id), Role.HOST).id == request_id


def test_every_command_is_accepted_from_its_allowed_roles() -> None:
    """Each command parses for every role its spec allows, with valid values."""
    valid: dict[str, dict[str, object]] = {
        "chat.send": {"text": "hi"},
        "like": {"count": 1},
        "product.pin": {"product_id": "p1"},
        "product.unpin": {},
        "bag.set": {"product_ids": ["p1", "p2"]},
        "room.status": {"status": "live"},
        "chat.delete": {"message_id": "m1"},
        "chat.mute": {"user_id": "u1", "seconds": 60},
        "chat.ban": {"user_id": "u1"},
        "chat.unban": {"user_id": "u1"},
        "chat.slow_mode": {"seconds": 0},
    }
    assert set(valid) == set(COMMANDS)
    for kind, fields in valid.items():
        for role in COMMANDS[kind].roles:
            assert parse_command(frame(type=kind, **fields), role) == Command(kind, fields, None)


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("like", {"count": 1}),
        ("like", {"count": MAX_LIKES_PER_MESSAGE}),
        ("chat.mute", {"user_id": "u", "seconds": 1}),
        ("chat.mute", {"user_id": "u", "seconds": MAX_MUTE_SECONDS}),
        ("chat.slow_mode", {"seconds": 0}),
        ("chat.slow_mode", {"seconds": MAX_SLOW_MODE_SECONDS}),
        ("bag.set", {"product_ids": []}),
        ("bag.set", {"product_ids": [f"p{i}" for i in range(MAX_BAG)]}),
        ("room.status", {"status": "scheduled"}),
        ("room.status", {"status": "ended"}),
    ],
)
def test_boundary_values_are_accepted(kind: str, fields: dict[str, object]) -> None:
    """The ends of every allowed range are themselves allowed."""
    assert parse_command(frame(type=kind, **fields), Role.ADMIN).fields == fields


# --- refused frames -----------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "{", "not json", '{"type": "like",}', b"\xff\xfe", "{'type': 'like'}"])
def test_invalid_json_is_refused_as_bad_json(raw: str | bytes) -> None:
    """A frame that is not JSON is refused with bad_json."""
    problem = refusal(raw)
    assert problem.code is ErrorCode.BAD_JSON
    assert problem.message == "frame is not valid JSON"
    assert problem.request_id is None


@pytest.mark.parametrize("raw", ["[]", '["like"]', "1", '"like"', "null", "true"])
def test_json_that_is_not_an_object_is_refused(raw: str) -> None:
    """Valid JSON that is not an object is refused with bad_request."""
    problem = refusal(raw)
    assert problem.code is ErrorCode.BAD_REQUEST
    assert "JSON object" in problem.message


@pytest.mark.parametrize("kind", ["nope", "chat", "chat.send ", "CHAT.SEND", 5, None, ["like"], {"x": 1}])
def test_unknown_or_missing_type_is_refused(kind: object) -> None:
    """A type that names no command (or is not a string, or is absent) is refused with unknown_type."""
    message = {"id": "r1"} if kind is None else {"type": kind, "id": "r1"}
    problem = refusal(orjson.dumps(message))
    assert problem.code is ErrorCode.UNKNOWN_TYPE
    assert problem.message == f"unknown message type {kind!r}"
    assert problem.request_id == "r1"


@pytest.mark.parametrize("request_id", [1.5, True, False, [1], {"a": 1}])
def test_id_that_is_not_a_string_or_whole_number_is_refused(request_id: object) -> None:
    """An id of another type (a float, a boolean, a list, an object) is refused with bad_request."""
    problem = refusal(frame(type="like", count=1, id=request_id))
    assert problem.code is ErrorCode.BAD_REQUEST
    assert problem.message == "'id' must be a string or a number"


@pytest.mark.parametrize(
    ("kind", "fields", "missing"),
    [
        ("chat.send", {}, "text"),
        ("like", {}, "count"),
        ("like", {"count": None}, "count"),
        ("product.pin", {}, "product_id"),
        ("bag.set", {}, "product_ids"),
        ("room.status", {}, "status"),
        ("chat.delete", {}, "message_id"),
        ("chat.mute", {"seconds": 5}, "user_id"),
        ("chat.mute", {"user_id": "u"}, "seconds"),
        ("chat.ban", {}, "user_id"),
        ("chat.unban", {}, "user_id"),
        ("chat.slow_mode", {}, "seconds"),
    ],
)
def test_missing_field_is_refused_naming_it(kind: str, fields: dict[str, object], missing: str) -> None:
    """A command without a required field (or with null) is refused, naming the command and the field."""
    problem = refusal(frame(type=kind, id=9, **fields))
    assert problem.code is ErrorCode.BAD_REQUEST
    assert problem.message == f"'{kind}' needs the field '{missing}'"
    assert problem.request_id == 9


@pytest.mark.parametrize(
    ("kind", "fields", "wrong", "expected"),
    [
        ("chat.send", {"text": 5}, "text", "a string"),
        ("chat.send", {"text": ["hi"]}, "text", "a string"),
        ("like", {"count": "3"}, "count", "a whole number"),
        ("like", {"count": 1.0}, "count", "a whole number"),
        ("product.pin", {"product_id": 1}, "product_id", "a string"),
        ("bag.set", {"product_ids": "p1"}, "product_ids", "a list"),
        ("bag.set", {"product_ids": {"p1": 1}}, "product_ids", "a list"),
        ("room.status", {"status": 1}, "status", "a string"),
        ("chat.mute", {"user_id": "u", "seconds": "60"}, "seconds", "a whole number"),
        ("chat.slow_mode", {"seconds": 2.5}, "seconds", "a whole number"),
    ],
)
def test_field_of_the_wrong_type_is_refused(kind: str, fields: dict[str, object], wrong: str, expected: str) -> None:
    """A field of the wrong JSON type is refused, saying which type it must be."""
    problem = refusal(frame(type=kind, **fields))
    assert problem.code is ErrorCode.BAD_REQUEST
    assert problem.message == f"'{wrong}' must be {expected}"


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("like", {"count": True}),
        ("like", {"count": False}),
        ("chat.mute", {"user_id": "u", "seconds": True}),
        ("chat.slow_mode", {"seconds": False}),
    ],
)
def test_boolean_is_not_accepted_as_a_whole_number(kind: str, fields: dict[str, object]) -> None:
    """true/false are refused where a whole number is expected (Python's bool is an int)."""
    problem = refusal(frame(type=kind, **fields))
    assert problem.code is ErrorCode.BAD_REQUEST
    assert "must be a whole number" in problem.message


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("like", {"count": 0}, f"'count' must be 1 to {MAX_LIKES_PER_MESSAGE}"),
        ("like", {"count": -1}, f"'count' must be 1 to {MAX_LIKES_PER_MESSAGE}"),
        ("like", {"count": MAX_LIKES_PER_MESSAGE + 1}, f"'count' must be 1 to {MAX_LIKES_PER_MESSAGE}"),
        ("chat.mute", {"user_id": "u", "seconds": 0}, f"'seconds' must be 1 to {MAX_MUTE_SECONDS}"),
        ("chat.mute", {"user_id": "u", "seconds": MAX_MUTE_SECONDS + 1}, f"'seconds' must be 1 to {MAX_MUTE_SECONDS}"),
        ("chat.slow_mode", {"seconds": -1}, f"'seconds' must be 0 to {MAX_SLOW_MODE_SECONDS}"),
        (
            "chat.slow_mode",
            {"seconds": MAX_SLOW_MODE_SECONDS + 1},
            f"'seconds' must be 0 to {MAX_SLOW_MODE_SECONDS}",
        ),
    ],
)
def test_counts_out_of_range_are_refused(kind: str, fields: dict[str, object], message: str) -> None:
    """Like counts, mute durations and slow-mode intervals outside their range are refused, giving the range."""
    problem = refusal(frame(type=kind, id="r", **fields))
    assert problem.code is ErrorCode.BAD_REQUEST
    assert problem.message == message
    assert problem.request_id == "r"


@pytest.mark.parametrize("number", ["1e30", "100000000000000000000000000000", "-9223372036854775809"])
def test_number_too_big_for_an_integer_is_not_a_whole_number(number: str) -> None:
    """A count beyond 64 bits arrives as a float, and is refused as not a whole number."""
    problem = refusal('{"type": "like", "count": %s}' % number)
    assert problem.code is ErrorCode.BAD_REQUEST
    assert problem.message == "'count' must be a whole number"


@pytest.mark.parametrize("status", ["", "LIVE", "paused", "live "])
def test_unknown_room_status_is_refused(status: str) -> None:
    """room.status accepts only scheduled, live or ended."""
    problem = refusal(frame(type="room.status", status=status))
    assert problem.code is ErrorCode.BAD_REQUEST
    assert problem.message == "'status' must be one of scheduled, live, ended"


@pytest.mark.parametrize("ids", [[f"p{i}" for i in range(MAX_BAG + 1)], ["p1", 2], ["p1", None], [["p1"]]])
def test_bag_too_long_or_not_all_strings_is_refused(ids: list[object]) -> None:
    """bag.set takes at most MAX_BAG product ids, each a string."""
    problem = refusal(frame(type="bag.set", product_ids=ids))
    assert problem.code is ErrorCode.BAD_REQUEST
    assert problem.message == f"'product_ids' must be up to {MAX_BAG} strings"


def test_viewer_may_only_chat_and_like() -> None:
    """Every command beyond chat.send and like is refused to a viewer with forbidden, naming the role."""
    allowed = {kind for kind, spec in COMMANDS.items() if Role.VIEWER in spec.roles}
    assert allowed == {"chat.send", "like"}
    for kind in set(COMMANDS) - allowed:
        problem = refusal(frame(type=kind, id="x"), Role.VIEWER)
        assert problem.code is ErrorCode.FORBIDDEN
        assert problem.message == f"'{kind}' is not allowed for role viewer"
        assert problem.request_id == "x"


def test_moderator_may_moderate_but_not_present() -> None:
    """A moderator may delete, mute, ban and set slow mode, but not pin, set the bag or change the status."""
    for kind in ("product.pin", "product.unpin", "bag.set", "room.status"):
        assert COMMANDS[kind].roles == PRESENTERS
        problem = refusal(frame(type=kind), Role.MODERATOR)
        assert problem.code is ErrorCode.FORBIDDEN
        assert problem.message == f"'{kind}' is not allowed for role moderator"
    for kind in ("chat.delete", "chat.mute", "chat.ban", "chat.unban", "chat.slow_mode"):
        assert COMMANDS[kind].roles == STAFF


def test_role_is_checked_before_fields() -> None:
    """A viewer sending a staff command with bad fields learns only that it is forbidden."""
    problem = refusal(frame(type="chat.mute", user_id=5, seconds=-1), Role.VIEWER)
    assert problem.code is ErrorCode.FORBIDDEN


# --- server events ------------------------------------------------------------------


def test_event_carries_type_fields_and_server_timestamp() -> None:
    """event() returns the type, a ms server timestamp taken now, and the given fields."""
    before = int(time.time() * 1000)
    built = event("chat.message", id="m1", text="hi")
    after = int(time.time() * 1000)
    assert built["type"] == "chat.message"
    assert isinstance(built["ts"], int) and before <= built["ts"] <= after
    assert built["id"] == "m1" and built["text"] == "hi"


@pytest.mark.parametrize("kind", ["chat.send", "nope", "snapshot", "batch", ""])
def test_event_of_unknown_type_raises(kind: str) -> None:
    """Building an event of a type the protocol does not define is a programming error."""
    with pytest.raises(ValueError, match="unknown event type"):
        event(kind)


def test_durable_events_are_never_coalesced() -> None:
    """Durable events have no coalescing key: each one is delivered."""
    for kind in ("chat.message", "product.pinned", "room.status", "sale.started", "bag.changed"):
        assert coalesce_key(event(kind)) is None


def test_room_wide_latest_value_events_coalesce_by_type() -> None:
    """viewers and likes keep only their newest value per tick: the key is the type alone."""
    assert coalesce_key(event("viewers", count=1)) == "viewers"
    assert coalesce_key(event("viewers", count=2)) == "viewers"
    assert coalesce_key(event("likes", total=5)) == "likes"


def test_per_sale_latest_value_events_coalesce_by_sale() -> None:
    """stock and sale.toast coalesce per sale: two sales never replace each other's values."""
    assert coalesce_key(event("stock", sale_id="s1", left=3)) == "stock:s1"
    assert coalesce_key(event("stock", sale_id="s2", left=3)) == "stock:s2"
    assert coalesce_key(event("sale.toast", sale_id="s1")) == "sale.toast:s1"
    assert coalesce_key(event("stock", sale_id="s1")) != coalesce_key(event("sale.toast", sale_id="s1"))


# --- frames built from encoded events ------------------------------------------------------


def test_a_durable_event_gets_its_offset_first_and_stays_valid_json() -> None:
    """with_offset() puts the offset in front of an event encoded once, without decoding it again."""
    encoded = encode(event("chat.deleted", message_id="m1"))
    assert orjson.loads(with_offset(42, encoded)) == {"offset": 42, **orjson.loads(encoded)}


def test_bus_messages_carry_the_offset_or_zero_for_latest_values() -> None:
    """A message between processes is '<offset> <event>'; a latest-value event has offset 0; a private one names
    its user ('@<user> <event>')."""
    encoded = encode(event("likes", total=3))
    assert parse_bus_message(bus_message(encoded)) == (0, encoded, None)
    assert parse_bus_message(bus_message(encoded, 7)) == (7, encoded, None)
    assert parse_bus_message(bus_private("u_1", encoded)) == (0, encoded, "u_1")


def test_recovered_and_snapshot_frames_are_json_with_their_fields() -> None:
    """The first frames a viewer gets parse as JSON and carry what docs/protocol.md says."""
    missed = [with_offset(5, encode(event("chat.deleted", message_id="a")))]
    frame = orjson.loads(recovered(5, "ep", 3, 9, ",".join(missed)))
    assert frame["type"] == "recovered" and frame["offset"] == 5 and frame["epoch"] == "ep"
    assert frame["viewers"] == 3 and frame["likes"] == 9 and frame["events"][0]["offset"] == 5
    assert orjson.loads(recovered(5, "ep", 0, 0, ""))["events"] == []
    first = orjson.loads(snapshot({"offset": 1, "epoch": "ep"}))
    assert first["type"] == "snapshot" and first["recovered"] is False and first["offset"] == 1


def test_browser_protocol_mirrors_the_server() -> None:
    """static/js/protocol.js, run in Node, gives the same wire() as server/protocol.py: no name or number differs."""
    node = shutil.which("node")
    assert node is not None, "the protocol mirror test needs Node.js (scripts/test installs Debian's nodejs)"
    printed = subprocess.run(
        [
            node,
            "--input-type=module",
            "-e",
            "import { wire } from './static/js/protocol.js'; console.log(JSON.stringify(wire()))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert orjson.loads(printed.stdout) == wire()
