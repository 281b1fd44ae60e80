"""The demo shop: a merchant `demo`, a room `demo` and a few products, so a new install shows a live room at once."""

from __future__ import annotations

from redis.asyncio import Redis

from server.rooms.catalog import Catalog, product_from

DEMO_MERCHANT = "demo"
DEMO_ROOM = "demo"
DEMO_PRODUCTS = [
    {"id": "sneaker", "title": "Cloudrunner sneakers", "price": 5900, "image_url": "/img/sneaker.svg"},
    {"id": "hoodie", "title": "Everyday hoodie", "price": 3900, "image_url": "/img/hoodie.svg"},
    {"id": "mug", "title": "Stoneware mug", "price": 1200, "image_url": "/img/mug.svg"},
    {"id": "lipstick", "title": "Velvet lipstick", "price": 1800, "image_url": "/img/lipstick.svg"},
]


async def seed_demo(redis_url: str) -> bool:
    """Create the demo shop unless it exists; True when created now."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        return await _seed(Catalog(redis))
    finally:
        await redis.aclose()


async def _seed(catalog: Catalog) -> bool:
    if not await catalog.create_merchant(DEMO_MERCHANT, "Demo Shop"):
        return False
    for body in DEMO_PRODUCTS:
        await catalog.put_product(product_from(DEMO_MERCHANT, str(body["id"]), {**body, "currency": "USD"}))
    if await catalog.get_room(DEMO_ROOM) is None:
        await catalog.create_room(DEMO_MERCHANT, DEMO_ROOM, "Demo live show")
    return True
