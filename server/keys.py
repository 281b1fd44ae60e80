"""Redis key names. Every key of a merchant or a room shares one {hash tag}, so each works on Redis Cluster."""

from __future__ import annotations


def merchant(merchant_id: str) -> str:
    return f"merchant:{{{merchant_id}}}"


def products(merchant_id: str) -> str:
    return f"merchant:{{{merchant_id}}}:products"


def merchant_rooms(merchant_id: str) -> str:
    return f"merchant:{{{merchant_id}}}:rooms"


def blocklist(merchant_id: str) -> str:
    return f"merchant:{{{merchant_id}}}:blocklist"


def room(room_id: str) -> str:
    return f"room:{{{room_id}}}"


def history(room_id: str) -> str:
    return f"room:{{{room_id}}}:history"


def presence(room_id: str) -> str:
    return f"room:{{{room_id}}}:presence"


def room_peak(room_id: str) -> str:
    """The room's peak viewers seen by stats reads since its show opened (zset member "viewers", raised with GT)."""
    return f"room:{{{room_id}}}:peak"


def banned(room_id: str) -> str:
    return f"room:{{{room_id}}}:banned"


def muted(room_id: str) -> str:
    return f"room:{{{room_id}}}:muted"


def chat_rate(room_id: str, user_id: str) -> str:
    return f"room:{{{room_id}}}:rate:{user_id}"


def chat_slow(room_id: str, user_id: str) -> str:
    return f"room:{{{room_id}}}:slow:{user_id}"


def video_owner(room_id: str) -> str:
    """The server process that holds the room's video (its WHIP publisher and WHEP viewers)."""
    return f"room:{{{room_id}}}:video"


def video_calls(process_id: str) -> str:
    """The pub/sub channel on which a server process takes video calls from the other processes."""
    return f"video:{{{process_id}}}"


def hls_playlist(room_id: str) -> str:
    """The room's LL-HLS playlist record, and the channel its notices go on."""
    return f"room:{{{room_id}}}:hls"


def hls_media(room_id: str, stream: str, name: str) -> str:
    """One init section, part or segment of the room's LL-HLS stream `stream`."""
    return f"room:{{{room_id}}}:hls:{stream}:{name}"


def hls_wanted(room_id: str) -> str:
    """Someone asked for the room's HLS lately: the process holding its stream packages it."""
    return f"room:{{{room_id}}}:hls:wanted"


def webrtc_viewers(room_id: str) -> str:
    """The room's WebRTC viewers on every process (sorted set: session id -> expiry), for the cap."""
    return f"room:{{{room_id}}}:webrtc"


def channel(room_id: str) -> str:
    """The pub/sub channel that carries a room's events between server processes. Every channel is a shard
    channel (SPUBLISH / SSUBSCRIBE, server.live.broker): on a Redis Cluster only the shard owning its slot has it."""
    return f"room:{{{room_id}}}:events"


def sale(sale_id: str) -> str:
    """A flash sale (hash): its terms and its counters available / held / paid."""
    return f"sale:{{{sale_id}}}"


def sale_orders(sale_id: str) -> str:
    """The sale's orders (hash order id -> order JSON)."""
    return f"sale:{{{sale_id}}}:orders"


def sale_users(sale_id: str) -> str:
    """Units each user holds or has paid for in the sale (hash user id -> units)."""
    return f"sale:{{{sale_id}}}:users"


def sale_keys(sale_id: str) -> str:
    """Idempotency keys of purchases (hash "<user id>\\n<key>" -> order id)."""
    return f"sale:{{{sale_id}}}:keys"


def sale_holds(sale_id: str) -> str:
    """Unpaid holds (sorted set order id, scored by expiry in ms)."""
    return f"sale:{{{sale_id}}}:holds"


def sale_log(sale_id: str) -> str:
    """Every order change of the sale, in order (stream)."""
    return f"sale:{{{sale_id}}}:log"


def sale_groups(sale_id: str) -> str:
    """A group-buy offer's groups (hash group id -> group JSON; docs/group-buys.md)."""
    return f"sale:{{{sale_id}}}:groups"


def sale_members(sale_id: str) -> str:
    """Who is in a forming group of the offer (hash user id -> group id)."""
    return f"sale:{{{sale_id}}}:members"


def sale_open_groups(sale_id: str) -> str:
    """The offer's open groups by when their window ends (sorted set)."""
    return f"sale:{{{sale_id}}}:open"


def sale_board(sale_id: str) -> str:
    """The offer's open groups, closest to filling first (sorted set)."""
    return f"sale:{{{sale_id}}}:board"


def sale_refunds(sale_id: str) -> str:
    """Orders of failed groups whose money is still to go back (sorted set, by when to try)."""
    return f"sale:{{{sale_id}}}:refunds"


def sales_due() -> str:
    """Sales with something due (sorted set sale id, scored by when, ms): a start, an end, a hold expiring."""
    return "sales:due"


def ledger_storm() -> str:
    """Set (with a TTL) while a purchase storm is on: the backup's projection waits (string, server.sales.backup)."""
    return "ledger:storm"


def sales_ledger() -> str:
    """Sales whose order log the ledger backup reads (sorted set sale id, scored by creation ms): until archived."""
    return "sales:ledger"


def revoked_sessions() -> str:
    """Sessions signed out (sorted set session id, scored by when its last access token expires, ms;
    server.access.sessions)."""
    return "sessions:revoked"


def revoked_channel() -> str:
    """The pub/sub channel that tells every process at once of sessions signed out (server.access.sessions)."""
    return "sessions:{revoked}"


def login_link(ticket: str) -> str:
    """A single-use sign-in link: the user it signs in (string with a TTL, server.access.sessions)."""
    return f"login:{{{ticket}}}"


def code(destination: str) -> str:
    """The one-time sign-in code sent to an email or phone: its hash and attempts (hash with a TTL,
    server.access.codes)."""
    return f"signin:{{{destination}}}"


def limit(name: str, subject: str) -> str:
    """A token bucket of a limit (hash tokens, at; server.access.limits). One slot for all: a limit check may take
    several buckets in one script."""
    return f"limit:{{limits}}:{name}:{subject}"


def sharers_claim(room_id: str) -> str:
    """Held (with a TTL of REFERRAL_PASS_MS) by the process publishing the room's top sharers (string,
    server.referrals.feed): the board goes out at most once per interval, whatever the processes."""
    return f"room:{{{room_id}}}:sharers-claim"


def referrals_changed() -> str:
    """Sharers whose numbers changed since the last publish, as "<merchant> <sharer> <room>" (set;
    server.referrals.feed): each process pops some, so each change is published once."""
    return "referrals:changed"


def personal_channel() -> str:
    """The pub/sub channel of personal events (server.live.personal): addressed to one person, or to one
    merchant's staff, wherever they are connected; every process's hub reads it."""
    return "users:{events}"


def giveaway_watch(room_id: str, giveaway_id: str) -> str:
    """Watch time counted for a giveaway (hash user id -> ms; server.giveaways.watch)."""
    return f"room:{{{room_id}}}:giveaway:{giveaway_id}:watch"


def giveaway_slot(room_id: str, giveaway_id: str) -> str:
    """The last watch slot each person was credited (hash user id -> slot number; server.giveaways.watch)."""
    return f"room:{{{room_id}}}:giveaway:{giveaway_id}:slot"


def giveaway_said(room_id: str, giveaway_id: str) -> str:
    """Who typed the giveaway's keyword in the room's chat (set of user ids; server.giveaways.watch)."""
    return f"room:{{{room_id}}}:giveaway:{giveaway_id}:said"


def auction(room_id: str, auction_id: str) -> str:
    """An auction (hash: its terms, state, price, leader, ends_at...; server.auctions.store). Tagged with the room, so
    the bid script also reads the room's bans."""
    return f"room:{{{room_id}}}:auction:{auction_id}"


def auction_bidders(room_id: str, auction_id: str) -> str:
    """Each bidder's highest bid (hash user id -> JSON)."""
    return f"room:{{{room_id}}}:auction:{auction_id}:bidders"


def auction_keys(room_id: str, auction_id: str) -> str:
    """Idempotency keys of bids (hash "<user id>\\n<key>" -> the answer JSON)."""
    return f"room:{{{room_id}}}:auction:{auction_id}:keys"


def auction_log(room_id: str, auction_id: str) -> str:
    """Every bid, in order (stream), until copied to PostgreSQL."""
    return f"room:{{{room_id}}}:auction:{auction_id}:log"


def auction_barred(room_id: str, auction_id: str) -> str:
    """Bidders the merchant barred (set of user ids), copied into each running auction."""
    return f"room:{{{room_id}}}:auction:{auction_id}:barred"


def auctions_due() -> str:
    """Auctions to close (sorted set "<room id> <auction id>", scored by their end, ms; server.auctions.clock)."""
    return "auctions:due"


def shelves(merchant_id: str) -> str:
    """Product id -> the sale id of its shelf (server/sales/shelf.py)."""
    return f"merchant:{{{merchant_id}}}:shelves"
