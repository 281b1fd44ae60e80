"""Merchants, products and rooms: create and read them, each merchant's data under its own keys."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from server import keys
from server.errors import BadRequest, Conflict, NotFound
from server.rooms.record import Room, RoomRecords

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
CURRENCIES = frozenset({"USD", "EUR", "GBP", "CNY", "JPY", "INR", "BRL", "IDR", "KRW", "SGD", "AUD", "CAD"})


class CatalogError(BadRequest):
    """A product, room or id the catalog refuses; the message says why."""


@dataclass(frozen=True)
class Product:
    id: str
    merchant_id: str
    title: str
    image_url: str
    price: int  # minor units (cents)
    currency: str

    def public(self) -> dict[str, Any]:
        return asdict(self)


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise CatalogError(f"{what} must be 1-48 lowercase letters, digits, '-' or '_'")
    return value


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(5)}"


def product_from(merchant_id: str, product_id: str, body: dict[str, Any]) -> Product:
    """Validate a product body from the API."""
    title = body.get("title")
    if not isinstance(title, str) or not 1 <= len(title.strip()) <= 120:
        raise CatalogError("'title' must be 1-120 characters")
    image_url = body.get("image_url", "")
    if (
        not isinstance(image_url, str)
        or len(image_url) > 500
        or (image_url and not image_url.startswith(("https://", "http://", "/")))
    ):
        raise CatalogError("'image_url' must be an http(s) URL or a path, up to 500 characters")
    price = body.get("price")
    if not isinstance(price, int) or isinstance(price, bool) or not 0 <= price <= 100_000_000:
        raise CatalogError("'price' must be a whole number of minor units (cents), 0 to 100000000")
    currency = body.get("currency", "USD")
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise CatalogError(f"'currency' must be one of {', '.join(sorted(CURRENCIES))}")
    return Product(product_id, merchant_id, title.strip(), image_url, price, currency)


class Catalog:
    """Merchants, their products and rooms. Every read names the merchant, so one never sees another's."""

    def __init__(self, redis: Redis, records: RoomRecords | None = None) -> None:
        self.redis = redis
        self.records = records or RoomRecords(redis)

    async def create_merchant(self, merchant_id: str, name: str, created_at: int | None = None) -> bool:
        """Create the merchant (`created_at`: unix seconds, now unless restoring), or rename it; True when it is new."""
        check_id(merchant_id, "merchant id")
        key = keys.merchant(merchant_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "id", merchant_id)
            pipe.hsetnx(key, "created", int(time.time()) if created_at is None else created_at)
            pipe.hset(key, "name", name)
            created, _, _ = await pipe.execute()
        return bool(created)

    async def merchant_exists(self, merchant_id: str) -> bool:
        return bool(await self.redis.exists(keys.merchant(merchant_id)))

    async def get_merchant(self, merchant_id: str) -> dict[str, str] | None:
        data = cast(dict[str, str], await self.redis.hgetall(keys.merchant(merchant_id)))
        return data or None

    async def put_product(self, product: Product) -> None:
        await self.redis.hset(keys.products(product.merchant_id), product.id, orjson.dumps(product.public()))

    async def add_product(self, product: Product) -> bool:
        """Store a new product; False (and nothing changed) when its id is taken."""
        return bool(
            await self.redis.hsetnx(keys.products(product.merchant_id), product.id, orjson.dumps(product.public()))
        )

    async def get_product(self, merchant_id: str, product_id: str) -> Product | None:
        raw = await self.redis.hget(keys.products(merchant_id), product_id)
        return Product(**orjson.loads(raw)) if raw else None

    async def list_products(self, merchant_id: str) -> list[Product]:
        raw = await self.redis.hvals(keys.products(merchant_id))
        return sorted((Product(**orjson.loads(item)) for item in raw), key=lambda p: p.id)

    async def delete_product(self, merchant_id: str, product_id: str) -> bool:
        return bool(await self.redis.hdel(keys.products(merchant_id), product_id))

    async def create_room(self, merchant_id: str, room_id: str, title: str) -> Room:
        check_id(room_id, "room id")
        if not 1 <= len(title.strip()) <= 120:
            raise CatalogError("'title' must be 1-120 characters")
        room = await self.records.create(merchant_id, room_id, title.strip())
        if room is None:
            raise Conflict(f"room '{room_id}' already exists", "exists")
        return room

    async def get_room(self, room_id: str) -> Room | None:
        return await self.records.card(room_id)

    async def offer(self, merchant_id: str, room_id: str, product_id: object) -> Product:
        """The product a host puts on offer in one of the merchant's rooms (a sale, a giveaway's prize, an auction's
        lot): NotFound for another shop's room, BadRequest for a product that is not the shop's."""
        room = await self.get_room(room_id)
        if room is None or room.merchant_id != merchant_id:
            raise NotFound(f"no room '{room_id}' in this shop")
        product = await self.get_product(merchant_id, product_id) if isinstance(product_id, str) else None
        if product is None:
            raise BadRequest("'product_id' must name one of this shop's products")
        return product

    async def list_rooms(self, merchant_id: str) -> list[Room]:
        return await self.records.cards(merchant_id)

    async def set_blocklist(self, merchant_id: str, words: list[str]) -> None:
        key = keys.blocklist(merchant_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if words:
                pipe.sadd(key, *words)
            await pipe.execute()

    async def get_blocklist(self, merchant_id: str) -> list[str]:
        return sorted(cast(set[str], await self.redis.smembers(keys.blocklist(merchant_id))))
