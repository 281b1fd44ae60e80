"""One server process: its id, its Redis clients, its broker, its services, and their start and stop in order."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
from collections.abc import Awaitable, Callable

from redis.exceptions import ResponseError

from server.access.accounts import Accounts
from server.access.addresses import Addresses
from server.access.codes import Codes, SandboxMessenger
from server.access.limits import Limits
from server.access.sessions import Revocations, Sessions
from server.access.tokens import Tokens
from server.auctions.clock import AuctionClock
from server.auctions.desk import AuctionDesk
from server.auctions.record import AuctionRecord
from server.auctions.store import AuctionStore
from server.config import Settings
from server.giveaways.clock import GiveawayClock
from server.giveaways.desk import GiveawayDesk
from server.giveaways.record import Giveaways
from server.giveaways.watch import Watch
from server.ledger.audit import AuditLog
from server.ledger.client import Database
from server.ledger.retention import Retention
from server.live.broker import Broker
from server.live.history import History
from server.live.hub import Hub
from server.live.loader import RoomLoader
from server.live.personal import Delivery
from server.referrals.earnings import Earnings
from server.referrals.feed import ReferralsFeed
from server.referrals.payouts import Payouts, SandboxPayouts
from server.referrals.program import Programs
from server.referrals.shares import Shares
from server.rooms.catalog import Catalog
from server.rooms.chat import Chat
from server.rooms.presence import Presence
from server.rooms.record import RoomRecords
from server.rooms.shows import Shows
from server.rooms.stage import Stage
from server.sales.backup import Backup
from server.sales.changes import SaleChanges
from server.sales.checkout import Checkout
from server.sales.feed import SalesFeed
from server.sales.ledger import SalesLedger
from server.sales.payments import SandboxProvider
from server.sales.reconciler import Reconciler
from server.sales.refunds import Refunds
from server.sales.shelf import Shelves
from server.sales.shipping import Shipping
from server.sales.stats import RoomStats
from server.sales.store import Sales
from server.sales.waitlist import Waitlist
from server.service.desk import Desk
from server.service.notices import Notices
from server.service.replies import Replies
from server.service.threads import Threads
from server.store import client
from server.store.batcher import ScriptBatcher
from server.tasks import Tasks
from streaming.hls import Hls, HlsOptions
from streaming.hls_store import HlsStore
from streaming.ice import IceServers
from streaming.owners import Owners
from streaming.relay import Relay, RelayOptions

log = logging.getLogger("livecart.node")


class Node:
    """Everything one server process runs, built once at start-up and shared by every handler.

    `start()` starts the background work; `stop()` ends it in order (video first, so rooms still
    hear that their stream went offline; the broker and the Redis clients last), and returns
    within `settings.shutdown_seconds` whatever Redis does.
    """

    def __init__(self, settings: Settings, ice: IceServers) -> None:
        assert (settings.redis_url or settings.redis_sentinels) and settings.database_url, "the launcher sets both"
        self.id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.settings = settings
        self.redis = client.open_store(settings, pool_size=settings.redis_pool_size)
        self.pubsub_redis = client.open_store(settings, pool_size=2, health_check_seconds=15)
        self.broker = Broker(self.pubsub_redis)
        self.db = Database(settings.database_url, pool_size=settings.database_pool_size)
        self.audit = AuditLog(self.db)
        self.tokens = Tokens(settings.secret_key)
        self.accounts = Accounts(self.db)
        self.sessions = Sessions(self.db, self.redis, self.tokens, self.accounts, settings)
        self.revocations = Revocations(self.redis)
        self.messenger = SandboxMessenger(self.db)
        self.codes = Codes(self.redis, self.messenger, settings.secret_key, settings.code_ttl_seconds)
        self.limits = Limits(self.redis)
        self.tasks = Tasks("node")

        self.records = RoomRecords(self.redis, settings.history_size)
        self.catalog = Catalog(self.redis, self.records)
        self.history = History(self.redis)
        self.presence = Presence(self.redis, settings.presence_ttl_ms)
        self.shows = Shows(self.db, self.presence, self.records)
        self.stage = Stage(self.catalog, self.records, self.shows)
        self.chat = Chat(self.redis, self.catalog, self.records, self.accounts, settings)

        durable_ms = settings.durable_ack_timeout_ms if settings.durable_ack else None
        batcher = ScriptBatcher(
            self.redis,
            durable_ms,
            replicas=settings.redis_wait_replicas,
            replicas_timeout_ms=settings.redis_wait_timeout_ms,
        )
        self.sales = Sales(self.redis, batcher, SaleChanges(), SalesLedger(self.db))
        self.payments = SandboxProvider(self.db, settings.sandbox_slow_card_ms)
        self.refunds = Refunds(self.db, self.sales, self.payments, self.audit)
        self.sales_feed = SalesFeed(self.id, self.sales, self.records, self.refunds, settings)
        self.addresses = Addresses(self.db)
        self.shipping = Shipping(self.db, self.addresses)
        self.checkout = Checkout(self.sales, self.payments, self.limits, self.shipping, settings)
        self.shelves = Shelves(self.redis, self.sales, settings.hold_seconds * 1000)
        self.waitlist = Waitlist(self.db)
        self.backup = Backup(self.id, self.sales, settings)
        self.reconciler = Reconciler(self.db, self.sales.ledger, self.payments, settings)
        self.stats = RoomStats(self.shows, self.presence)

        self.programs = Programs(self.db, self.audit)
        self.shares = Shares(self.db, self.programs)
        self.earnings = Earnings(self.db, self.programs, self.audit)
        self.payout_provider = SandboxPayouts(self.db, settings.secret_key)
        self.payouts = Payouts(self.db, self.earnings, self.programs, self.payout_provider, self.audit)
        self.payout_provider.deliver = self.payouts.callback
        self.referrals_feed = ReferralsFeed(self.redis, self.earnings, self.records, settings)

        self.delivery = Delivery(self.redis)
        self.threads = Threads(self.db)
        self.desk = Desk(
            self.threads,
            Replies(self.db),
            self.delivery,
            self.limits,
            self.audit,
            self.chat,
            self.catalog,
            self.shows,
            self.sales.ledger,
            self.accounts,
            settings,
        )
        self.notices = Notices(self.db, self.accounts, self.messenger, self.catalog, settings)

        loader = RoomLoader(self.records, self.history, self.sales, settings.history_size, settings.chat_recent)
        self.hub = Hub(settings, self.id, self.broker, loader, self.history, self.records, self.presence)
        options = RelayOptions(
            sessions_per_user=settings.video_sessions_per_user,
            sessions_per_address=settings.video_sessions_per_address,
            pipe_linger=settings.video_pipe_linger_ms / 1000,
        )
        # The relay tells the owners of each stream change (an offline room's lease is given up), they tell the stage;
        # it pipes a room whose host is in another process through them (streaming.cascade).
        # The HLS packager taps every host stream held here (docs/video.md "HLS for the crowd").
        hls_options = HlsOptions(
            settings.hls_part_ms / 1000, settings.hls_segment_ms / 1000, settings.webrtc_viewers_per_room
        )
        self.hls = Hls(HlsStore(self.redis, self.broker), hls_options, lambda: self.relay.viewer_sessions())
        self.relay = Relay(
            ice,
            on_stream=lambda room_id, online: self.owners.stream_changed(room_id, online),
            options=options,
            taps=[self.hls],
            upstream=lambda room_id, offer: self.owners.upstream(room_id, offer),
            process_id=self.id,
        )
        self.owners = Owners(self.id, self.redis, self.broker, self.relay, settings, self.stage.set_stream)
        self.giveaways = GiveawayDesk(
            Giveaways(self.db),
            Watch(self.redis, settings.giveaway_watch_slot_ms),
            self.chat,
            self.records,
            self.delivery,
            self.limits,
            self.audit,
            settings,
        )
        self.giveaway_clock = GiveawayClock(
            self.giveaways, self.hub.people_in, self.accounts, self.messenger, settings.giveaway_clock_ms
        )
        self.auctions = AuctionDesk(
            AuctionStore(self.redis, batcher),
            AuctionRecord(self.db),
            self.records,
            self.delivery,
            self.limits,
            self.audit,
            settings,
        )
        self.auction_clock = AuctionClock(
            self.auctions, self.sales, self.accounts, self.messenger, settings.auction_clock_ms
        )
        self.retention = Retention(
            self.db,
            self.sales.ledger,
            self.audit,
            self.sessions,
            self.threads,
            self.giveaways.record,
            self.auctions.record,
            self.shipping,
            self.waitlist,
            settings.order_retention_days,
        )
        self.revocations.on_revoked(self.hub.sign_out)
        self.revocations.on_revoked(self.relay.sign_out)

    async def start(self) -> None:
        await client.initialize(self.redis)
        await self.db.open()
        if self.settings.durable_ack:
            await self._check_durable()
        await self.revocations.start(self.broker)
        self.tasks.every(self.settings.revocation_sync_ms / 1000, self.revocations.sync, "revocations")
        await self.hub.start()
        self.sales_feed.start()
        if self.settings.ledger_consumer:
            self.backup.start()
        self.reconciler.start()
        self.referrals_feed.start()
        self.notices.start()
        self.giveaway_clock.start()
        self.auction_clock.start()
        self.retention.start()
        await self.owners.start()
        self.hls.start()
        # What start-up made (modules, the app, pools, scripts) lives as long as the process: moved out of the
        # collector's reach, the collections a storm's allocations trigger walk only what the storm made
        # (docs/benchmarks.md: the purchase storm's p99).
        gc.freeze()

    async def _check_durable(self) -> None:
        """DURABLE_ACK needs a Redis that writes an AOF: say so at start, not at the first purchase."""
        try:
            await self.redis.execute_command(  # type: ignore[no-untyped-call]
                "WAITAOF", 1, 0, self.settings.durable_ack_timeout_ms
            )
        except ResponseError as problem:
            raise SystemExit(f"DURABLE_ACK=1 needs Redis 7.2+ (or Valkey) with appendonly yes: {problem}") from None

    async def stop(self) -> None:
        """Stop every service in order; each step gets what is left of the shutdown budget."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_seconds
        steps: list[tuple[str, Callable[[float], Awaitable[None]]]] = [
            ("video", self.relay.close),
            ("video owners", self.owners.stop),
            ("hls", self.hls.stop),
            ("sales feed", self.sales_feed.stop),
            ("ledger backup", self.backup.stop),
            ("reconciler", self.reconciler.stop),
            ("share and earn", self.referrals_feed.stop),
            ("sandbox payouts", self.payout_provider.stop),
            ("service notices", self.notices.stop),
            ("giveaways", self.giveaway_clock.stop),
            ("auctions", self.auction_clock.stop),
            ("retention", self.retention.stop),
            ("hub", self.hub.stop),
            ("revocations", self.tasks.stop),
            ("broker", lambda _: self.broker.stop()),
            ("pub/sub client", lambda _: self.pubsub_redis.aclose()),
            ("redis client", lambda _: self.redis.aclose()),
            ("database", lambda _: self.db.close()),
        ]
        for name, step in steps:
            left = max(deadline - loop.time(), 0.1)
            try:
                await asyncio.wait_for(step(left / 2), left)
            except TimeoutError:
                log.warning("shutdown: %s did not stop in time; going on", name)
            except Exception as error:
                log.warning("shutdown: %s failed (%r); going on", name, error)
