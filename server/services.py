"""The services one server process runs, built once at start-up and shared by every handler."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from server.auth import Tokens
from server.catalog import Catalog
from server.chat import Chat
from server.config import Settings
from server.history import History
from server.hub import Hub
from server.orders import Orders
from server.payments import SandboxProvider
from server.presence import Presence
from server.rooms import Rooms
from server.sales import Sales
from server.sales_feed import SalesFeed


@dataclass
class Services:
    settings: Settings
    redis: Redis
    tokens: Tokens
    catalog: Catalog
    history: History
    hub: Hub
    rooms: Rooms
    chat: Chat
    sales: Sales
    sales_feed: SalesFeed
    orders: Orders

    @classmethod
    def build(cls, settings: Settings, redis: Redis, pubsub_redis: Redis) -> Services:
        catalog = Catalog(redis)
        history = History(redis, settings.history_size)
        sales = Sales(redis)
        return cls(
            settings=settings,
            redis=redis,
            tokens=Tokens(settings.secret_key),
            catalog=catalog,
            history=history,
            hub=Hub(settings, history, Presence(redis), pubsub_redis),
            rooms=Rooms(catalog, history),
            chat=Chat(redis, catalog, history, settings),
            sales=sales,
            sales_feed=SalesFeed(sales, history, redis),
            orders=Orders(sales, SandboxProvider(redis)),
        )
