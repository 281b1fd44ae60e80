"""The yardstick for the hub: a bare `websockets` server that broadcast()s one frame to every client at a fixed rate.

Run by hub_bench --baseline; it sends frames of the same shape and rate as the livecart hub would: each tick a
stock event and every chat message its clients sent since the last (`chat.send`, relayed as `chat.message` with
consecutive offsets, nothing sampled), and answers GET /readyz (200) for the launcher.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from http import HTTPStatus

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


async def main(port: int, hz: float) -> None:
    clients: set[ServerConnection] = set()
    chat: list[str] = []  # the texts sent since the last tick

    async def handler(connection: ServerConnection) -> None:
        clients.add(connection)
        try:
            await connection.send('{"type":"snapshot"}')
            with contextlib.suppress(ConnectionClosed):
                async for message in connection:  # the viewers' auth frame, the chatters' chat.send
                    command = orjson.loads(message)
                    if command.get("type") == "chat.send":
                        chat.append(command["text"])
        finally:
            clients.discard(connection)

    def ready(connection: ServerConnection, request: Request) -> Response | None:
        return connection.respond(HTTPStatus.OK, "ok\n") if request.path == "/readyz" else None

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=16, process_request=ready):
        offset = 0
        while True:
            await asyncio.sleep(1 / hz)
            now = int(time.time() * 1000)
            events = [f'{{"type":"stock","ts":{now},"sale_id":"s1","available":{now % 1000}}}']
            for text in chat:
                offset += 1
                message = (
                    f'{{"id":"x","user_id":"u","name":"Guest","role":"viewer","text":{orjson.dumps(text).decode()}}}'
                )
                events.append(f'{{"offset":{offset},"type":"chat.message","ts":{now},"message":{message}}}')
            chat.clear()
            broadcast(clients, '{"type":"batch","ts":%d,"events":[%s]}' % (now, ",".join(events)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hz", type=float, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.hz))
