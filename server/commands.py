"""What each client command does in a room, once the protocol module has parsed and role-checked it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from server.hub import LocalRoom, Viewer
from server.protocol import Command
from server.services import Services

Handler = Callable[[Services, LocalRoom, Viewer, Command], Awaitable[dict[str, Any] | None]]


async def chat_send(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> dict[str, Any]:
    assert room.state is not None
    message_id = await services.chat.post(
        room.id, room.state.merchant_id, room.state.slow_mode, viewer.identity, viewer.is_staff, command.fields["text"]
    )
    return {"message_id": message_id}


async def like(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    services.hub.like(room, command.fields["count"])
    return None


async def product_pin(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    assert room.state is not None
    await services.rooms.pin(room.id, room.state.merchant_id, command.fields["product_id"])
    return None


async def product_unpin(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    await services.rooms.unpin(room.id)
    return None


async def bag_set(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    assert room.state is not None
    await services.rooms.set_bag(room.id, room.state.merchant_id, command.fields["product_ids"])
    return None


async def room_status(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    await services.rooms.set_status(room.id, command.fields["status"])
    return None


async def chat_delete(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    await services.chat.delete(room.id, command.fields["message_id"])
    return None


async def chat_mute(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    await services.chat.mute(room.id, command.fields["user_id"], command.fields["seconds"])
    return None


async def chat_ban(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    await services.chat.ban(room.id, command.fields["user_id"])
    return None


async def chat_unban(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    await services.chat.unban(room.id, command.fields["user_id"])
    return None


async def chat_slow_mode(services: Services, room: LocalRoom, viewer: Viewer, command: Command) -> None:
    await services.rooms.set_slow_mode(room.id, command.fields["seconds"])
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
