"""The yardstick for the hub: a bare `websockets` server that broadcast()s one frame to every client at a fixed rate.

Run by hub_bench --baseline; it sends frames of the same shape and rate as the livecart hub would,
and answers GET /readyz (200) for the launcher.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response


async def main(port: int, hz: float, chat_per_second: float) -> None:
    clients: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        clients.add(connection)
        try:
            await connection.send('{"type":"snapshot"}')
            await connection.wait_closed()
        finally:
            clients.discard(connection)

    def ready(connection: ServerConnection, request: Request) -> Response | None:
        return connection.respond(HTTPStatus.OK, "ok\n") if request.path == "/readyz" else None

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=16, process_request=ready):
        interval = 1 / hz
        per_tick = chat_per_second / hz
        owed = 0.0
        while True:
            await asyncio.sleep(interval)
            now = int(time.time() * 1000)
            owed += per_tick
            chats = int(owed)
            owed -= chats
            events = [f'{{"type":"stock","ts":{now},"sale_id":"s1","available":{now % 1000}}}']
            message = '{"id":"x","user_id":"u","name":"Guest","role":"viewer","text":"is this available in blue?"}'
            events += [f'{{"offset":{now},"type":"chat.message","ts":{now},"message":{message}}}' for _ in range(chats)]
            broadcast(clients, '{"type":"batch","ts":%d,"events":[%s]}' % (now, ",".join(events)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hz", type=float, default=10)
    parser.add_argument("--chat", type=float, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.hz, args.chat))
