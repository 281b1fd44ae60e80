"""One merchant's whole data out of an install and into another, as NDJSON: the backup and restore of a merchant.

A file is one JSON object a line, each with its "type", in this order:

    header       {format: "livecart.merchant", version: 1, merchant_id, schema, exported_at (ms)}
    merchant     {id, name, created (unix seconds)}                          Redis, through rooms/catalog.py
    product      each product's public form                                  Redis, through rooms/catalog.py
    blocklist    {words}                                                      Redis, through rooms/catalog.py
    room         {id, merchant_id, title, status, pinned, bag, slow_mode, likes}   Redis, through rooms/record.py
    show, sale, order, order_change, payment, sandbox_authorization,
    referral_program, commission_rule, share, share_visit, referral_binding, refund, commission, payout,
    sandbox_payout, service_thread, service_message, service_notice, service_block, service_reply,
    giveaway, giveaway_entry, giveaway_winner, giveaway_claim, auction, auction_bid, auction_award, auction_bar, audit
                 one PostgreSQL row each, verbatim: every column, times ISO 8601 in UTC, jsonb as JSON
    end          {lines}: how many lines came before it (a file cut short is refused)

The rows are read in one REPEATABLE READ transaction (one snapshot of the record). Not in a file:
what lives only while a room is on air (its stream, viewers, chat history, bans and mutes) and the
Redis counters of sales (a sale live at export comes back as its record and its orders; the
repair command rebuilds its counters from them). `sandbox_authorization` rows are the sandbox
gateway's book of this merchant's payments (a real gateway keeps its own).

`import_merchant` restores a file into an install that has no such merchant, in Redis or in
PostgreSQL: every row verbatim (ids kept, the id sequences then moved past them) in one
transaction, which commits only once the catalog is written through its owners, the merchant's
record last. A refusal, or a failure before the commit, leaves PostgreSQL unchanged; catalog
entries written before a failure carry no merchant record, and the retry takes them over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import asyncpg
import orjson
from redis.asyncio import Redis

from server.protocol import event, now_ms
from server.rooms import record
from server.rooms.catalog import Catalog, CatalogError, Product, check_id
from server.sales.ledger import project_whole_log

FORMAT = "livecart.merchant"
VERSION = 1
BATCH = 500  # rows per INSERT on import


class TransferError(Exception):
    """The export or import is refused; the message says why. Nothing was imported."""


@dataclass(frozen=True)
class Table:
    kind: str  # the line's "type"
    name: str
    where: str  # the merchant's rows ($1: the merchant id)
    order: str


_OF_GIVEAWAYS = "giveaway_id IN (SELECT giveaway_id FROM giveaways WHERE merchant_id = $1)"
_OF_AUCTIONS = "auction_id IN (SELECT auction_id FROM auctions WHERE merchant_id = $1)"

# In the order they are written and restored (a row's references come before it).
TABLES = (
    Table("show", "shows", "merchant_id = $1", "show_id"),
    Table("sale", "sales", "merchant_id = $1", "sale_id"),
    Table("order", "orders", "merchant_id = $1", "order_id"),
    Table(
        "order_change",
        "order_changes",
        "sale_id IN (SELECT sale_id FROM sales WHERE merchant_id = $1)",
        "order_id, version",
    ),
    Table("group_buy", "group_buys", "merchant_id = $1", "group_id"),
    Table("payment", "payments", "merchant_id = $1", "payment_id"),
    Table(
        "sandbox_authorization",
        "sandbox_authorizations",
        "authorization_id IN (SELECT authorization_id FROM payments WHERE merchant_id = $1)",
        "authorization_id",
    ),
    Table("referral_program", "referral_programs", "merchant_id = $1", "merchant_id"),
    Table("commission_rule", "commission_rules", "merchant_id = $1", "scope, scope_id, level"),
    Table("share", "shares", "merchant_id = $1", "code"),
    Table("share_visit", "share_visits", "merchant_id = $1", "visit_id"),
    Table("referral_binding", "referral_bindings", "merchant_id = $1", "binding_id"),
    Table("refund", "refunds", "merchant_id = $1", "order_id"),
    Table("order_shipping", "order_shipping", "merchant_id = $1", "order_id"),
    Table("waitlist", "waitlist", "merchant_id = $1", "product_id, user_id"),
    Table("commission", "commissions", "merchant_id = $1", "entry_id"),
    Table("payout", "payouts", "merchant_id = $1", "payout_id"),
    Table(
        "sandbox_payout",
        "sandbox_payouts",
        "payout_id IN (SELECT payout_id FROM payouts WHERE merchant_id = $1)",
        "payout_id, attempt",
    ),
    Table("service_thread", "service_threads", "merchant_id = $1", "thread_id"),
    Table("service_message", "service_messages", "merchant_id = $1", "message_id"),
    Table("service_notice", "service_notices", "merchant_id = $1", "message_id"),
    Table("service_block", "service_blocks", "merchant_id = $1", "user_id"),
    Table("service_reply", "service_replies", "merchant_id = $1", "reply_id"),
    Table("giveaway", "giveaways", "merchant_id = $1", "giveaway_id"),
    Table("giveaway_entry", "giveaway_entries", _OF_GIVEAWAYS, "giveaway_id, user_id"),
    Table("giveaway_winner", "giveaway_winners", _OF_GIVEAWAYS, "giveaway_id, rank"),
    Table("giveaway_claim", "giveaway_claims", _OF_GIVEAWAYS, "giveaway_id, rank"),
    Table("auction", "auctions", "merchant_id = $1", "auction_id"),
    Table("auction_bid", "auction_bids", _OF_AUCTIONS, "auction_id, seq"),
    Table("auction_award", "auction_awards", _OF_AUCTIONS, "auction_id, round"),
    Table("auction_bar", "auction_bars", "merchant_id = $1", "user_id"),
    Table("audit", "audit_log", "merchant_id = $1", "audit_id"),
)
_TABLES = {table.kind: table for table in TABLES}
_SERIALS = (  # ids kept on import: the sequences follow
    ("payments", "payment_id"),
    ("audit_log", "audit_id"),
    ("order_changes", "seq"),
    ("share_visits", "visit_id"),
    ("referral_bindings", "binding_id"),
    ("commissions", "entry_id"),
    ("service_messages", "message_id"),
)
_MERCHANT_TABLES = ("shows", "sales", "orders", "payments", "audit_log", "referral_programs", "shares", "commissions",
                    "service_threads", "service_replies", "giveaways", "auctions", "auction_bars",
                    "order_shipping", "waitlist")  # fmt: skip


def _line(kind: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, **data}) + b"\n"


async def _schema(connection: asyncpg.Connection) -> int:
    try:
        version: int | None = await connection.fetchval("SELECT max(version) FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        raise TransferError("this PostgreSQL database has no livecart schema") from None
    return version or 0


# --- export -------------------------------------------------------------------------------------


async def export_merchant(
    redis: Redis, connection: asyncpg.Connection, merchant_id: str, out: IO[bytes]
) -> Counter[str]:
    """Write the merchant's whole data to `out`; return how many lines of each type."""
    catalog = Catalog(redis)
    merchant = await catalog.get_merchant(merchant_id)
    if merchant is None:
        raise TransferError(f"no merchant '{merchant_id}' in this install (Redis at REDIS_URL)")
    counts: Counter[str] = Counter()

    def write(kind: str, line: bytes) -> None:
        out.write(line)
        counts[kind] += 1

    await project_whole_log(connection)  # every order change copied so far, in the orders exported
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        await connection.execute("SET LOCAL TimeZone = 'UTC'")
        header = {"format": FORMAT, "version": VERSION, "merchant_id": merchant_id}
        write("header", _line("header", {**header, "schema": await _schema(connection), "exported_at": now_ms()}))
        write(
            "merchant",
            _line(
                "merchant", {"id": merchant_id, "name": merchant["name"], "created": int(merchant.get("created", 0))}
            ),
        )
        for product in await catalog.list_products(merchant_id):
            write("product", _line("product", product.public()))
        write("blocklist", _line("blocklist", {"words": await catalog.get_blocklist(merchant_id)}))
        for card in await catalog.list_rooms(merchant_id):
            found = await catalog.records.get(card.id)
            if found is not None:
                write("room", _line("room", _room(found)))
        for table in TABLES:
            prefix = b'{"type":"' + table.kind.encode() + b'",'
            query = f"SELECT row_to_json(t)::text FROM {table.name} t WHERE {table.where} ORDER BY {table.order}"
            async for row in connection.cursor(query, merchant_id, prefetch=BATCH):
                write(table.kind, prefix + row[0][1:].encode() + b"\n")
    out.write(_line("end", {"lines": sum(counts.values())}))
    return counts


def _room(found: record.RoomRecord) -> dict[str, Any]:
    room = found.room
    return {
        "id": room.id,
        "merchant_id": room.merchant_id,
        "title": room.title,
        "status": room.status,
        "pinned": found.pinned,
        "bag": found.bag,
        "slow_mode": found.slow_mode,
        "likes": found.likes,
    }


# --- import -------------------------------------------------------------------------------------


@dataclass
class _Catalog:
    """The file's Redis side, kept until the rows are in (it is small: products and rooms)."""

    merchant: dict[str, Any] | None = None
    products: list[Product] = field(default_factory=list)
    blocklist: list[str] = field(default_factory=list)
    rooms: list[dict[str, Any]] = field(default_factory=list)


async def import_merchant(
    redis: Redis, connection: asyncpg.Connection, lines: Iterable[bytes]
) -> tuple[str, Counter[str]]:
    """Restore a file made by `export_merchant` into this install; return the merchant id and the lines of each type."""
    numbered = enumerate(lines, 1)
    first = next(numbered, None)
    if first is None:
        raise TransferError("the file is empty")
    header = _parse(*first)
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise TransferError("line 1: not a livecart merchant export (no header)")
    if header.get("version") != VERSION:
        raise TransferError(f"line 1: format version {header.get('version')!r}; this livecart reads version {VERSION}")
    merchant_id = _id(1, header.get("merchant_id"), "the header's merchant_id")
    schema = await _schema(connection)
    if not isinstance(header.get("schema"), int) or header["schema"] > schema:
        raise TransferError(
            f"the file was made with schema {header.get('schema')}; this database has {schema}: upgrade first"
        )

    counts: Counter[str] = Counter({"header": 1})
    catalog = _Catalog()
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"livecart.import:{merchant_id}")
        where = await _exists(redis, connection, merchant_id)
        if where is not None:
            raise TransferError(f"merchant '{merchant_id}' already exists in this install ({where}); nothing imported")
        rows = _Rows(connection, merchant_id)
        ended = False
        for number, raw in numbered:
            if ended:
                raise TransferError(f"line {number}: data after the end line")
            item = _parse(number, raw)
            kind = item.pop("type", None)
            if kind == "end":
                if item.get("lines") != number - 1:
                    raise TransferError(f"line {number}: the end line counts {item.get('lines')} lines before it")
                ended = True
                continue
            if kind in _TABLES:
                await rows.add(number, _TABLES[kind], item)
            else:
                _catalog_line(catalog, merchant_id, number, kind, item)
            counts[str(kind)] += 1
        if not ended:
            raise TransferError("the file ends before its end line: it was cut short")
        await rows.flush()
        if catalog.merchant is None:
            raise TransferError("the file has no merchant line")
        for table, column in _SERIALS:
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" greatest(coalesce(max({column}), 0), nextval(pg_get_serial_sequence('{table}', '{column}'))))"
                f" FROM {table}"
            )
        await _write_catalog(redis, merchant_id, catalog)
    return merchant_id, counts


def _id(number: int, value: object, what: str) -> str:
    try:
        return check_id(value if isinstance(value, str) else "", what)
    except CatalogError as problem:
        raise TransferError(f"line {number}: {problem}") from None


def _parse(number: int, raw: bytes) -> dict[str, Any]:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TransferError(f"line {number}: not valid JSON") from None
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise TransferError(f"line {number}: not a JSON object with a 'type'")
    return item


async def _exists(redis: Redis, connection: asyncpg.Connection, merchant_id: str) -> str | None:
    """Where the merchant already is in this install (None: nowhere)."""
    if await Catalog(redis).merchant_exists(merchant_id):
        return "Redis"
    for table in _MERCHANT_TABLES:
        if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE merchant_id = $1)", merchant_id):
            return f"PostgreSQL, {table}"
    return None


def _catalog_line(catalog: _Catalog, merchant_id: str, number: int, kind: object, item: dict[str, Any]) -> None:
    if kind == "merchant":
        if (
            item.get("id") != merchant_id
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("created"), int)
        ):
            raise TransferError(f"line {number}: the merchant line must be {{id: '{merchant_id}', name, created}}")
        catalog.merchant = item
    elif kind == "product":
        try:
            product = Product(**item)
        except TypeError:
            raise TransferError(
                f"line {number}: a product has the fields {list(Product.__dataclass_fields__)}"
            ) from None
        if product.merchant_id != merchant_id:
            raise TransferError(f"line {number}: product '{product.id}' belongs to merchant '{product.merchant_id}'")
        catalog.products.append(product)
    elif kind == "blocklist":
        words = item.get("words")
        if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
            raise TransferError(f"line {number}: the block list must be {{words: [...]}}")
        catalog.blocklist = words
    elif kind == "room":
        if item.get("merchant_id") != merchant_id:
            raise TransferError(
                f"line {number}: room '{item.get('id')}' belongs to merchant '{item.get('merchant_id')}'"
            )
        _id(number, item.get("id"), "a room id")
        catalog.rooms.append(item)
    else:
        raise TransferError(f"line {number}: unknown type {kind!r}")


class _Rows:
    """PostgreSQL rows of the file, inserted in batches of one table, in the file's order."""

    def __init__(self, connection: asyncpg.Connection, merchant_id: str) -> None:
        self.connection = connection
        self.merchant_id = merchant_id
        self.table: Table | None = None
        self.batch: list[dict[str, Any]] = []
        self.first_line = 0
        self.sales: set[str] = set()
        self.authorizations: set[str] = set()
        self.payouts: set[str] = set()

    async def add(self, number: int, table: Table, row: dict[str, Any]) -> None:
        owner = row.get("merchant_id", self.merchant_id)
        if owner != self.merchant_id:
            raise TransferError(f"line {number}: a {table.kind} row of merchant '{owner}'")
        if table.kind == "sale":
            self.sales.add(str(row.get("sale_id")))
        elif table.kind == "payment":
            self.authorizations.add(str(row.get("authorization_id")))
        elif table.kind == "order_change" and row.get("sale_id") not in self.sales:
            raise TransferError(f"line {number}: an order change of sale '{row.get('sale_id')}', not in the file")
        elif table.kind == "sandbox_authorization" and row.get("authorization_id") not in self.authorizations:
            raise TransferError(f"line {number}: a sandbox authorization of no payment in the file")
        elif table.kind == "payout":
            self.payouts.add(str(row.get("payout_id")))
        elif table.kind == "sandbox_payout" and row.get("payout_id") not in self.payouts:
            raise TransferError(f"line {number}: a sandbox payout of no withdrawal in the file")
        if table is not self.table or len(self.batch) >= BATCH:
            await self.flush()
            self.table, self.first_line = table, number
        self.batch.append(row)

    async def flush(self) -> None:
        if self.table is None or not self.batch:
            return
        name = self.table.name
        try:
            await self.connection.execute(
                f"INSERT INTO {name} SELECT * FROM json_populate_recordset(NULL::{name}, $1::json)",
                orjson.dumps(self.batch).decode(),
            )
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as problem:
            last = self.first_line + len(self.batch) - 1
            raise TransferError(
                f"lines {self.first_line}-{last}: PostgreSQL refused a {self.table.kind} row ({problem});"
                " import into an install that has none of this merchant's records"
            ) from None
        self.batch = []


async def _write_catalog(redis: Redis, merchant_id: str, catalog: _Catalog) -> None:
    """The file's catalog through its owners' APIs; the merchant's record last (it marks the import done)."""
    assert catalog.merchant is not None
    shop = Catalog(redis)
    records = shop.records
    for room in catalog.rooms:
        found = await records.get(room["id"])
        if found is not None and found.room.merchant_id != merchant_id:
            raise TransferError(f"room '{room['id']}' exists in this install for merchant '{found.room.merchant_id}'")
    for product in catalog.products:
        await shop.put_product(product)
    await shop.set_blocklist(merchant_id, catalog.blocklist)
    for room in catalog.rooms:
        await _restore_room(records, merchant_id, room)
    await shop.create_merchant(merchant_id, catalog.merchant["name"], catalog.merchant["created"])


async def _restore_room(records: record.RoomRecords, merchant_id: str, room: dict[str, Any]) -> None:
    """Create the room (or take over one a failed import left) and bring its record to the file's."""
    room_id = room["id"]
    await records.create(merchant_id, room_id, str(room.get("title", "")))
    found = await records.get(room_id)
    assert found is not None
    status, pinned, bag = room.get("status", "scheduled"), room.get("pinned"), room.get("bag", [])
    slow_mode, likes = int(room.get("slow_mode", 0)), int(room.get("likes", 0))
    if found.room.title != room.get("title"):
        raise TransferError(f"room '{room_id}' exists in this install with another title")
    if found.room.status != status:
        await records.publish(room_id, event("room.status", status=status), record.status(status))
    if found.pinned != pinned:
        pin = event("product.pinned", product=pinned) if pinned else event("product.unpinned")
        await records.publish(room_id, pin, record.pinned(pinned))
    if found.bag != bag:
        await records.publish(room_id, event("bag.changed", products=bag), record.bag(bag))
    if found.slow_mode != slow_mode:
        await records.publish(room_id, event("chat.slow_mode", seconds=slow_mode), record.slow_mode(slow_mode))
    if found.likes != likes:
        await records.add_likes(room_id, likes - found.likes)
