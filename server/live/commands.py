"""What each client command does in a room, once the protocol module has parsed and role-checked it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from server.access.tokens import Actor
from server.live.hub import LocalRoom
from server.live.outbox import Viewer
from server.protocol import Command

if TYPE_CHECKING:
    from server.node import Node

Handler = Callable[["Node", LocalRoom, Viewer, Command], Awaitable[dict[str, Any] | None]]


async def chat_send(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> dict[str, Any]:
    assert room.state is not None
    text = command.fields["text"]
    message_id = await node.chat.post(room.id, room.state, viewer.identity, viewer.role, viewer.address, text)
    await node.giveaways.heard(room.id, viewer.identity.user_id, text)
    return {"message_id": message_id}


async def like(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    count = node.hub.take_likes(viewer.identity.user_id, command.fields["count"])
    if count:
        node.hub.like(room, count)
    return None


def _actor(room: LocalRoom, viewer: Viewer) -> Actor:
    """The viewer acting as staff of the room's merchant (the parser let only staff commands through)."""
    assert room.state is not None
    return Actor(viewer.identity, room.state.merchant_id, viewer.role)


async def product_pin(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    assert room.state is not None
    await node.stage.pin(room.id, room.state.merchant_id, command.fields["product_id"])
    return None


async def product_unpin(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    await node.stage.unpin(room.id)
    return None


async def bag_set(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    assert room.state is not None
    await node.stage.set_bag(room.id, room.state.merchant_id, command.fields["product_ids"])
    return None


async def room_status(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    assert room.state is not None
    status = command.fields["status"]
    before, after = {"status": room.state.status}, {"status": status}
    async with node.audit.change(_actor(room, viewer), "room.status_changed", f"room:{room.id}", before, after):
        await node.stage.set_status(room.id, status)
    return None


async def chat_delete(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    assert room.state is not None
    message_id = command.fields["message_id"]
    message = next((item for item in room.state.chat if item.get("id") == message_id), None)
    before = None if message is None else {"room_id": room.id, **message}
    async with node.audit.change(_actor(room, viewer), "chat.message_deleted", f"message:{message_id}", before):
        await node.chat.delete(room.id, message_id)
    return None


async def chat_mute(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    user_id, seconds = command.fields["user_id"], command.fields["seconds"]
    after = {"room_id": room.id, "user_id": user_id, "seconds": seconds}
    async with node.audit.change(_actor(room, viewer), "chat.muted", f"user:{user_id}", after=after):
        await node.chat.mute(room.id, user_id, seconds)
    return None


async def chat_ban(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    user_id = command.fields["user_id"]
    after = {"room_id": room.id, "user_id": user_id}
    async with node.audit.change(_actor(room, viewer), "chat.banned", f"user:{user_id}", after=after):
        await node.chat.ban(room.id, user_id)
    return None


async def chat_unban(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    user_id = command.fields["user_id"]
    after = {"room_id": room.id, "user_id": user_id}
    async with node.audit.change(_actor(room, viewer), "chat.unbanned", f"user:{user_id}", after=after):
        await node.chat.unban(room.id, user_id)
    return None


async def chat_slow_mode(node: Node, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    assert room.state is not None
    seconds = command.fields["seconds"]
    before, after = {"room_id": room.id, "slow_mode": room.state.slow_mode}, {"room_id": room.id, "slow_mode": seconds}
    async with node.audit.change(_actor(room, viewer), "chat.slow_mode_changed", f"room:{room.id}", before, after):
        await node.chat.set_slow_mode(room.id, seconds)
    return None


HANDLERS: dict[str, Handler] = {
    "chat.send": chat_send,
    "like": like,
    "product.pin": product_pin,
    "product.unpin": product_unpin,
    "bag.set": bag_set,
    "room.status": room_status,
    "chat.delete": chat_delete,
    "chat.mute": chat_mute,
    "chat.ban": chat_ban,
    "chat.unban": chat_unban,
    "chat.slow_mode": chat_slow_mode,
}
