"""Configuration: every setting the server reads from the environment, read once here."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from server.datadir import FOLDER_MODE, private_opener

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"{minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise SystemExit(f"{name} must be {bounds}, got {value}")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise SystemExit(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {raw!r}")
    return raw in ("1", "true", "yes", "on")


def _rule(name: str, default: tuple[int, int]) -> tuple[int, int]:
    """A rate limit written COUNT/SECONDS (e.g. 20/600: twenty per ten minutes, all twenty at once if need be)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    count, _, seconds = raw.partition("/")
    if not (count.isdecimal() and seconds.isdecimal() and int(count) >= 1 and int(seconds) >= 1):
        raise SystemExit(f"{name} must be COUNT/SECONDS, both whole numbers of at least 1, e.g. 20/600, got {raw!r}")
    return int(count), int(seconds)


def _list(name: str, default: str = "") -> tuple[str, ...]:
    raw = os.environ.get(name, default)
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis_url: str | None = None
    redis_server: str | None = None
    redis_fsync: str = "everysec"
    database_url: str | None = None
    postgres_bin: str | None = None
    database_pool_size: int = 10
    data_dir: Path = Path("data")
    secret_key: str = ""
    allowed_origins: tuple[str, ...] = ()
    public_url: str = ""
    log_level: str = "info"
    tick_ms: int = 100  # a room's narrowest tick: at most one frame per tick ...
    tick_max_ms: int = 1000  # ... widened up to this while its fan-out does not fit (server.live.hub)
    chat_shown_per_second: int = 20  # chat messages a viewer is shown per second at most (0: all); staff see all
    history_size: int = 1000
    chat_recent: int = 50
    chat_max_length: int = 300
    chat_rate_count: int = 5
    chat_rate_seconds: int = 5
    outbox_max_bytes: int = 256 * 1024  # what may wait for a viewer (outbox and socket buffer) before 4000
    ping_interval_ms: int = 10_000  # a room socket is pinged this often ...
    slow_viewer_ms: int = 5000  # ... and closed with 4000 when a ping has no answer this long
    max_frame_bytes: int = 16 * 1024
    hold_seconds: int = 300
    ice_servers: tuple[str, ...] = field(default_factory=tuple)
    turn_secret: str = ""
    seed_demo: bool = True
    # Redis connections of a process, and how long a call may wait for one in a burst.
    redis_pool_size: int = 256
    redis_pool_wait_ms: int = 10_000
    # Redis Cluster (REDIS_CLUSTER=1, or a REDIS_URL that names a cluster node), or a Sentinel-managed primary.
    redis_cluster: bool = False
    redis_sentinels: tuple[str, ...] = ()  # host:port of each Sentinel; REDIS_URL is then unused
    redis_sentinel_master: str = "livecart"
    # Replicated acknowledgement: a hold or payment is acknowledged only once this many replicas have it (WAIT).
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 1000
    # Durable acknowledgement: a hold or payment is acknowledged only once Redis wrote it to its AOF (WAITAOF).
    durable_ack: bool = False
    durable_ack_timeout_ms: int = 1000
    # The ledger: backing up order changes to PostgreSQL, archiving ended sales, reconciling payments.
    ledger_consumer: bool = True
    ledger_interval_ms: int = 100
    ledger_batch: int = 1000
    ledger_claim_ms: int = 5000
    ledger_busy_changes: int = 100  # a pass that copies this many is a storm: the projection waits ...
    ledger_project_max_ms: int = 30_000  # ... at most this long
    sale_archive_grace_ms: int = 600_000
    reconcile_interval_ms: int = 30_000
    reconcile_grace_ms: int = 60_000
    order_retention_days: int = 3 * 365
    # How long the process's own shutdown (after uvicorn's) may take, whatever Redis does.
    shutdown_seconds: int = 5
    # Timings (tests shrink them): presence, rooms, chat, the sales feed, the sandbox, video ownership.
    presence_interval_ms: int = 1000
    presence_ttl_ms: int = 5000
    room_idle_seconds: int = 10
    blocklist_cache_ms: int = 2000
    stock_interval_ms: int = 100
    toast_interval_ms: int = 2000
    sale_clock_ms: int = 250
    live_revisit_ms: int = 500
    announce_claim_ms: int = 5000
    sandbox_slow_card_ms: int = 2000
    video_lease_ms: int = 10_000
    video_renew_ms: int = 1000
    video_call_seconds: int = 20
    video_pipe_linger_ms: int = 10_000  # a cascade pipe stays this long after its process's last viewer of the room
    # The HTTP edge: how long a request's headers and its body may take to arrive; the token that may read /metrics.
    header_timeout_ms: int = 10_000
    body_timeout_ms: int = 10_000
    metrics_token: str = ""

    # Accounts, sessions and abuse resistance (docs/security.md lists each with its default).
    access_token_seconds: int = 900
    session_days: int = 30
    staff_session_days: int = 7
    revocation_sync_ms: int = 1000
    auth_timeout_ms: int = 5000
    code_ttl_seconds: int = 600
    login_link_minutes: int = 10
    limit_guests: tuple[int, int] = (20, 600)  # (count, per seconds): new guests per client address
    limit_codes_destination: tuple[int, int] = (5, 3600)  # sign-in codes sent to one email or phone
    limit_codes_address: tuple[int, int] = (20, 3600)  # sign-in codes asked for from one address
    limit_sign_ins_address: tuple[int, int] = (30, 600)  # codes tried from one address
    limit_payments_order: tuple[int, int] = (5, 600)  # payment attempts of one order
    limit_payments_user: tuple[int, int] = (10, 600)
    limit_payments_address: tuple[int, int] = (30, 600)
    chat_address_rate_count: int = 20  # messages per CHAT_RATE_SECONDS from one address, all its users together
    room_sockets_per_user: int = 5
    room_sockets_per_address: int = 200
    video_sessions_per_user: int = 2
    video_sessions_per_address: int = 100
    webrtc_viewers_per_room: int = 300  # past this many WebRTC viewers a room's viewers get LL-HLS (docs/video.md)
    hls_part_ms: int = 250  # an LL-HLS part's length (a fragment is cut past it); 0: plain HLS, no parts
    hls_segment_ms: int = 1000  # an HLS segment's length: a keyframe is asked for past it
    likes_per_second: int = 10  # per user

    # Share and earn (docs/referrals.md).
    group_window_min_seconds: int = 900  # the shortest window a group-buy offer may give its groups
    group_refund_lease_ms: int = 30_000  # a failed group's refund claimed by one process that long
    referral_pass_ms: int = 1000  # the commission pass, and the sharers' live numbers, at most this often
    service_message_max_length: int = 1000  # a customer-service message (docs/customer-service.md)
    service_notify_after_ms: int = 60_000  # a staff answer no page of the buyer received goes by messenger after
    service_pass_ms: int = 5_000  # how often a process looks for answers to notify
    limit_service_messages: tuple[int, int] = (10, 60)  # a buyer's messages to shops
    limit_service_address: tuple[int, int] = (30, 60)  # buyers' messages from one address
    limit_service_staff: tuple[int, int] = (120, 60)  # a staff member's answers
    limit_service_typing: tuple[int, int] = (30, 60)  # typing signals of one person
    limit_shares: tuple[int, int] = (30, 3600)  # share links made by one user
    # Giveaways (docs/giveaways.md) and auctions (docs/auctions.md).
    giveaway_clock_ms: int = 1000  # draws, redraws, live entrant counts and watch time credited this often
    giveaway_watch_slot_ms: int = 5000  # watch time is credited in slots this long
    giveaway_min_seconds: int = 60  # the shortest giveaway
    giveaway_watch_margin_seconds: int = 120  # a watch condition is at least this much shorter than the giveaway
    giveaway_claim_min_seconds: int = 3600  # the shortest time a host may give winners to claim
    limit_giveaway_entries: tuple[int, int] = (10, 60)  # entry attempts of one person
    auction_clock_ms: int = 250  # auctions closed, wins awarded and settled, bids copied to the record this often
    auction_min_seconds: int = 10  # the shortest auction
    auction_pay_seconds: int = 600  # how long a winner has to pay, unless the host says
    auction_pay_min_seconds: int = 30  # the shortest time a host may give a winner to pay
    limit_bids: tuple[int, int] = (20, 10)  # bids of one person
    limit_share_visits: tuple[int, int] = (60, 600)  # share links opened from one address

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"


def _secret_key(data_dir: Path) -> str:
    """SECRET_KEY, or one generated once and kept in DATA_DIR so every worker and restart agree."""
    configured = os.environ.get("SECRET_KEY")
    if configured:
        return configured
    path = data_dir / "secret_key"
    data_dir.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    try:
        with open(path, "x", opener=private_opener) as handle:
            handle.write(secrets.token_urlsafe(32))
    except FileExistsError:
        pass
    return path.read_text().strip()


def load() -> Settings:
    """Read the environment; raise SystemExit with a readable message on a bad value."""
    data_dir = Path(os.environ.get("DATA_DIR", "data")).resolve()
    fsync = os.environ.get("REDIS_APPENDFSYNC", "everysec")
    if fsync not in ("always", "everysec", "no"):
        raise SystemExit(f"REDIS_APPENDFSYNC must be always, everysec or no, got {fsync!r}")
    log_level = os.environ.get("LOG_LEVEL", "info").lower()
    if log_level not in LOG_LEVELS:
        raise SystemExit(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    return Settings(
        host=os.environ.get("HOST", "127.0.0.1"),
        port=_int("PORT", 8000, 1, 65535),
        workers=_int("WEB_CONCURRENCY", 1, 1),
        redis_url=os.environ.get("REDIS_URL") or None,
        redis_server=os.environ.get("REDIS_SERVER") or None,
        redis_fsync=fsync,
        database_url=os.environ.get("DATABASE_URL") or None,
        postgres_bin=os.environ.get("POSTGRES_BIN") or None,
        database_pool_size=_int("DATABASE_POOL_SIZE", 10, 2, 1000),
        data_dir=data_dir,
        secret_key=_secret_key(data_dir),
        allowed_origins=_list("ALLOWED_ORIGINS"),
        public_url=os.environ.get("PUBLIC_URL", "").rstrip("/"),
        log_level=log_level,
        tick_ms=_int("TICK_MS", 100, 1),
        tick_max_ms=_int("TICK_MAX_MS", 1000, 1),
        chat_shown_per_second=_int("CHAT_SHOWN_PER_SECOND", 20, 0),
        history_size=_int("HISTORY_SIZE", 1000),
        chat_recent=_int("CHAT_RECENT", 50),
        chat_max_length=_int("CHAT_MAX_LENGTH", 300),
        chat_rate_count=_int("CHAT_RATE_COUNT", 5),
        chat_rate_seconds=_int("CHAT_RATE_SECONDS", 5),
        outbox_max_bytes=_int("OUTBOX_MAX_BYTES", 256 * 1024, 1024),
        ping_interval_ms=_int("PING_INTERVAL_MS", 10_000, 10),
        slow_viewer_ms=_int("SLOW_VIEWER_MS", 5000, 10),
        max_frame_bytes=_int("MAX_FRAME_BYTES", 16 * 1024),
        hold_seconds=_int("HOLD_SECONDS", 300),
        ice_servers=_list("ICE_SERVERS", ""),
        turn_secret=os.environ.get("TURN_SECRET", ""),
        seed_demo=_flag("SEED_DEMO", True),
        redis_pool_size=_int("REDIS_POOL_SIZE", 256, 2, 10_000),
        redis_pool_wait_ms=_int("REDIS_POOL_WAIT_MS", 10_000, 1),
        redis_cluster=_flag("REDIS_CLUSTER", False),
        redis_sentinels=_list("REDIS_SENTINELS", ""),
        redis_sentinel_master=os.environ.get("REDIS_SENTINEL_MASTER", "livecart"),
        redis_wait_replicas=_int("REDIS_WAIT_REPLICAS", 0, 0, 16),
        redis_wait_timeout_ms=_int("REDIS_WAIT_TIMEOUT_MS", 1000, 1),
        durable_ack=_flag("DURABLE_ACK", False),
        durable_ack_timeout_ms=_int("DURABLE_ACK_TIMEOUT_MS", 1000, 1),
        ledger_consumer=_flag("LEDGER_CONSUMER", True),
        ledger_interval_ms=_int("LEDGER_INTERVAL_MS", 100, 1),
        ledger_batch=_int("LEDGER_BATCH", 1000, 1, 100_000),
        ledger_claim_ms=_int("LEDGER_CLAIM_MS", 5000, 10),
        ledger_busy_changes=_int("LEDGER_BUSY_CHANGES", 100, 1),
        ledger_project_max_ms=_int("LEDGER_PROJECT_MAX_MS", 30_000, 0),
        sale_archive_grace_ms=_int("SALE_ARCHIVE_GRACE_MS", 600_000, 0),
        reconcile_interval_ms=_int("RECONCILE_INTERVAL_MS", 30_000, 10),
        reconcile_grace_ms=_int("RECONCILE_GRACE_MS", 60_000, 0),
        order_retention_days=_int("ORDER_RETENTION_DAYS", 3 * 365, 1),
        shutdown_seconds=_int("SHUTDOWN_SECONDS", 5, 1, 300),
        presence_interval_ms=_int("PRESENCE_INTERVAL_MS", 1000, 10),
        presence_ttl_ms=_int("PRESENCE_TTL_MS", 5000, 100),
        room_idle_seconds=_int("ROOM_IDLE_SECONDS", 10, 0),
        blocklist_cache_ms=_int("BLOCKLIST_CACHE_MS", 2000, 0),
        stock_interval_ms=_int("STOCK_INTERVAL_MS", 100, 1),
        toast_interval_ms=_int("TOAST_INTERVAL_MS", 2000, 1),
        sale_clock_ms=_int("SALE_CLOCK_MS", 250, 10),
        live_revisit_ms=_int("LIVE_REVISIT_MS", 500, 10),
        announce_claim_ms=_int("ANNOUNCE_CLAIM_MS", 5000, 100),
        sandbox_slow_card_ms=_int("SANDBOX_SLOW_CARD_MS", 2000, 0),
        video_lease_ms=_int("VIDEO_LEASE_MS", 10_000, 100),
        video_renew_ms=_int("VIDEO_RENEW_MS", 1000, 10),
        video_call_seconds=_int("VIDEO_CALL_SECONDS", 20, 1),
        video_pipe_linger_ms=_int("VIDEO_PIPE_LINGER_MS", 10_000, 0),
        access_token_seconds=_int("ACCESS_TOKEN_SECONDS", 900, 2, 86_400),
        session_days=_int("SESSION_DAYS", 30, 1, 365),
        staff_session_days=_int("STAFF_SESSION_DAYS", 7, 1, 90),
        revocation_sync_ms=_int("REVOCATION_SYNC_MS", 1000, 10, 60_000),
        auth_timeout_ms=_int("AUTH_TIMEOUT_MS", 5000, 10, 60_000),
        code_ttl_seconds=_int("CODE_TTL_SECONDS", 600, 10, 3600),
        login_link_minutes=_int("LOGIN_LINK_MINUTES", 10, 1, 60),
        limit_guests=_rule("LIMIT_GUESTS", (20, 600)),
        limit_codes_destination=_rule("LIMIT_CODES_DESTINATION", (5, 3600)),
        limit_codes_address=_rule("LIMIT_CODES_ADDRESS", (20, 3600)),
        limit_sign_ins_address=_rule("LIMIT_SIGN_INS_ADDRESS", (30, 600)),
        limit_payments_order=_rule("LIMIT_PAYMENTS_ORDER", (5, 600)),
        limit_payments_user=_rule("LIMIT_PAYMENTS_USER", (10, 600)),
        limit_payments_address=_rule("LIMIT_PAYMENTS_ADDRESS", (30, 600)),
        chat_address_rate_count=_int("CHAT_ADDRESS_RATE_COUNT", 20, 1),
        room_sockets_per_user=_int("ROOM_SOCKETS_PER_USER", 5, 1),
        room_sockets_per_address=_int("ROOM_SOCKETS_PER_ADDRESS", 200, 1),
        video_sessions_per_user=_int("VIDEO_SESSIONS_PER_USER", 2, 1),
        video_sessions_per_address=_int("VIDEO_SESSIONS_PER_ADDRESS", 100, 1),
        webrtc_viewers_per_room=_int("WEBRTC_VIEWERS_PER_ROOM", 300, 0),
        hls_part_ms=_int("HLS_PART_MS", 250, 0, 2000),
        hls_segment_ms=_int("HLS_SEGMENT_MS", 1000, 200, 10_000),
        likes_per_second=_int("LIKES_PER_SECOND", 10, 1),
        group_window_min_seconds=_int("GROUP_WINDOW_MIN_SECONDS", 900, 1, 86_400),
        group_refund_lease_ms=_int("GROUP_REFUND_LEASE_MS", 30_000, 10),
        referral_pass_ms=_int("REFERRAL_PASS_MS", 1000, 10, 60_000),
        service_message_max_length=_int("SERVICE_MESSAGE_MAX_LENGTH", 1000, 1, 10_000),
        service_notify_after_ms=_int("SERVICE_NOTIFY_AFTER_MS", 60_000, 1),
        service_pass_ms=_int("SERVICE_PASS_MS", 5_000, 10),
        limit_service_messages=_rule("LIMIT_SERVICE_MESSAGES", (10, 60)),
        limit_service_address=_rule("LIMIT_SERVICE_ADDRESS", (30, 60)),
        limit_service_staff=_rule("LIMIT_SERVICE_STAFF", (120, 60)),
        limit_service_typing=_rule("LIMIT_SERVICE_TYPING", (30, 60)),
        limit_shares=_rule("LIMIT_SHARES", (30, 3600)),
        giveaway_clock_ms=_int("GIVEAWAY_CLOCK_MS", 1000, 10, 60_000),
        giveaway_watch_slot_ms=_int("GIVEAWAY_WATCH_SLOT_MS", 5000, 10, 60_000),
        giveaway_min_seconds=_int("GIVEAWAY_MIN_SECONDS", 60, 1, 900),
        giveaway_watch_margin_seconds=_int("GIVEAWAY_WATCH_MARGIN_SECONDS", 120, 0, 900),
        giveaway_claim_min_seconds=_int("GIVEAWAY_CLAIM_MIN_SECONDS", 3600, 1, 14 * 86_400),
        limit_giveaway_entries=_rule("LIMIT_GIVEAWAY_ENTRIES", (10, 60)),
        auction_clock_ms=_int("AUCTION_CLOCK_MS", 250, 10, 60_000),
        auction_min_seconds=_int("AUCTION_MIN_SECONDS", 10, 1, 3600),
        auction_pay_seconds=_int("AUCTION_PAY_SECONDS", 600, 1, 86_400),
        auction_pay_min_seconds=_int("AUCTION_PAY_MIN_SECONDS", 30, 1, 86_400),
        limit_bids=_rule("LIMIT_BIDS", (20, 10)),
        limit_share_visits=_rule("LIMIT_SHARE_VISITS", (60, 600)),
        header_timeout_ms=_int("HEADER_TIMEOUT_MS", 10_000, 1),
        body_timeout_ms=_int("BODY_TIMEOUT_MS", 10_000, 1),
        metrics_token=os.environ.get("METRICS_TOKEN", "").strip(),
    )
