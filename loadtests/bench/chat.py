"""The benches' timed chat: chatters (signed-in members) send chat to the room at a rate, each text stamped with its
send time ("bench chat <ms since the epoch>", this machine's clock), and the viewers time its arrival from the stamp.

The chat comes from several sockets in turn, at most CHAT_PER_SOCKET messages/s each: the server closes a socket
that sends more than 20 commands in 2 s (4029, server/live/transport.py FLOOD_MESSAGES), so one socket cannot chat at
20/s.
"""

from __future__ import annotations

import asyncio
import math
import re
import time

import orjson

from loadtests.bench import wsclient
from loadtests.support import tokens

CHAT_PER_SOCKET = 5.0  # chat messages/s of one chatter's socket: half what the server allows one socket
CATCH_UP_SECONDS = 1.0  # a stalled sender sends what it owes at once, up to this many seconds' worth: a socket then
# sends at most CHAT_PER_SOCKET more in a burst, still under the server's 20 commands in 2 s
STAMP = re.compile(rb"bench chat (\d+\.\d+)")  # a chat text's send time, as a viewer finds it in a frame


def chatters(rate: float) -> int:
    """The chatters' sockets: enough for `rate` messages/s at CHAT_PER_SOCKET each."""
    return max(1, math.ceil(float(rate) / CHAT_PER_SOCKET))


def chatter_tokens(secret: str, rate: float, count: int = 0) -> list[str]:
    """A token for each chatter (u_chatter<i>, "Chatter <i>"): `count` of them, or (0) enough for `rate`."""
    return [tokens.buyer(secret, f"u_chatter{i}", f"Chatter {i}") for i in range(count or chatters(rate))]


async def send(
    writers: list[asyncio.StreamWriter], rate: float, stop: asyncio.Event, stamps: list[float] | None = None
) -> int:
    """Chat at `rate` messages/s from the writers (those still open) in turn, each text stamped with its send time
    (each stamp added to `stamps`), until `stop` or every writer closed; how many were sent."""
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    while not stop.is_set():
        delay = start + sent / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -CATCH_UP_SECONDS:  # this process stalled: what is owed is sent at once, a second's worth at most
            start -= delay + CATCH_UP_SECONDS
        open_writers = [writer for writer in writers if not writer.is_closing()]
        if not open_writers:
            return sent  # every chatter closed (the failures say by what)
        stamp = round(time.time() * 1000, 1)
        if stamps is not None:
            stamps.append(stamp)
        text = f"bench chat {stamp:.1f}"
        open_writers[sent % len(open_writers)].write(
            wsclient.text_frame(orjson.dumps({"type": "chat.send", "text": text}))
        )
        sent += 1
    return sent
