"""The demo shop: a merchant `demo`, a room `demo`, a few products and two staff accounts (an admin and a host),
so a new install shows a live room at once and its studio signs in with a single-use link."""

from __future__ import annotations

from server.access.accounts import Accounts, Destination
from server.protocol import Role
from server.rooms.catalog import Catalog, product_from

DEMO_MERCHANT = "demo"
DEMO_ROOM = "demo"
DEMO_ADMIN = Destination("email", "admin@demo.example")
DEMO_HOST = Destination("email", "host@demo.example")
DEMO_PRODUCTS = [
    {"id": "sneaker", "title": "Cloudrunner sneakers", "price": 5900, "image_url": "/img/sneaker.svg"},
    {"id": "hoodie", "title": "Everyday hoodie", "price": 3900, "image_url": "/img/hoodie.svg"},
    {"id": "mug", "title": "Stoneware mug", "price": 1200, "image_url": "/img/mug.svg"},
    {"id": "lipstick", "title": "Velvet lipstick", "price": 1800, "image_url": "/img/lipstick.svg"},
]


async def seed_demo(catalog: Catalog, accounts: Accounts) -> tuple[bool, str]:
    """Create the demo shop unless it exists (True when created now) and its two staff accounts unless they exist
    (a PostgreSQL of its own may be newer than the Redis); return its host's user id."""
    created = await _seed(catalog)
    host = await accounts.by_destination(DEMO_HOST)
    if host is None:
        await accounts.add_staff(DEMO_MERCHANT, DEMO_ADMIN, "Demo Admin", Role.ADMIN, None)
        return created, (await accounts.add_staff(DEMO_MERCHANT, DEMO_HOST, "Demo Host", Role.HOST, None)).user_id
    return created, host.id


async def _seed(catalog: Catalog) -> bool:
    if not await catalog.create_merchant(DEMO_MERCHANT, "Demo Shop"):
        return False
    for body in DEMO_PRODUCTS:
        await catalog.put_product(product_from(DEMO_MERCHANT, str(body["id"]), {**body, "currency": "USD"}))
    if await catalog.get_room(DEMO_ROOM) is None:
        await catalog.create_room(DEMO_MERCHANT, DEMO_ROOM, "Demo live show")
    return True
