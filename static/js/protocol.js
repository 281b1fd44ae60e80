// The room protocol's names and numbers: the mirror of server/protocol.py (see docs/protocol.md).
// Constants and pure helpers only, so Node can import it; wire() lists them for the test that compares.

/** Server -> client event types (docs/protocol.md, "Events"). */
export const Event = Object.freeze({
  ROOM_STATUS: "room.status",
  STREAM_STATE: "stream.state",
  PRODUCT_PINNED: "product.pinned",
  PRODUCT_UNPINNED: "product.unpinned",
  BAG_CHANGED: "bag.changed",
  CHAT_MESSAGE: "chat.message",
  CHAT_DELETED: "chat.deleted",
  CHAT_SLOW_MODE: "chat.slow_mode",
  SALE_CREATED: "sale.created",
  SALE_STARTED: "sale.started",
  SALE_SOLD_OUT: "sale.sold_out",
  SALE_ENDED: "sale.ended",
  SALE_UPDATED: "sale.updated",
  VIEWERS: "viewers",
  LIKES: "likes",
  STOCK: "stock",
  SALE_TOAST: "sale.toast",
  SHARERS: "sharers",
  EARNINGS: "earnings",
  GROUPS: "groups",
  GROUP: "group",
  SERVICE_MESSAGE: "service.message",
  SERVICE_THREAD: "service.thread",
  SERVICE_TYPING: "service.typing",
  GIVEAWAY: "giveaway",
  AUCTION: "auction",
  GIVEAWAY_WON: "giveaway.won",
  AUCTION_OUTBID: "auction.outbid",
  AUCTION_WON: "auction.won",
  PRODUCT_BACK: "product.back",
});

/** A sale's lifecycle, in order: each event carries the whole public sale in `sale`. */
export const SALE_EVENTS = Object.freeze([
  Event.SALE_CREATED,
  Event.SALE_STARTED,
  Event.SALE_SOLD_OUT,
  Event.SALE_ENDED,
]);

/** The status of a sale after each of SALE_EVENTS, in the same order. */
export const SALE_STATUSES = Object.freeze(["scheduled", "live", "sold_out", "ended"]);

export const ROOM_STATUSES = Object.freeze(["scheduled", "live", "ended"]);

/** Durable events have an offset, enter the room history and are replayed after a reconnect. */
export const DURABLE_EVENTS = new Set([
  Event.ROOM_STATUS,
  Event.STREAM_STATE,
  Event.PRODUCT_PINNED,
  Event.PRODUCT_UNPINNED,
  Event.BAG_CHANGED,
  Event.CHAT_MESSAGE,
  Event.CHAT_DELETED,
  Event.CHAT_SLOW_MODE,
  ...SALE_EVENTS,
  Event.SALE_UPDATED,
]);

/** Latest-value events have no offset; the newest per key (this field of the event, or the type alone) wins. */
export const LATEST_VALUE_KEYS = Object.freeze({
  [Event.VIEWERS]: null,
  [Event.LIKES]: null,
  [Event.STOCK]: "sale_id",
  [Event.SALE_TOAST]: "sale_id",
  [Event.SHARERS]: null,
  [Event.EARNINGS]: "merchant_id",
  [Event.GROUPS]: "sale_id",
  [Event.GROUP]: "id",
  [Event.GIVEAWAY]: "id",
  [Event.AUCTION]: "id",
});

/** Latest-value events addressed to one user: only that user's sockets get them (docs/referrals.md,
 * docs/group-buys.md). */
export const PRIVATE_EVENTS = new Set([Event.EARNINGS, Event.GROUP]);

/** Personal events (docs/customer-service.md, docs/giveaways.md, docs/auctions.md): to one person, or one shop's staff, on any room socket they have
 * open; never in the room's state. The field a newer one replaces an older one by, or null: never replaced. */
export const PERSONAL_EVENTS = Object.freeze({
  [Event.SERVICE_MESSAGE]: null,
  [Event.SERVICE_THREAD]: "thread_id",
  [Event.SERVICE_TYPING]: "thread_id",
  [Event.GIVEAWAY_WON]: null,
  [Event.AUCTION_OUTBID]: "auction_id",
  [Event.AUCTION_WON]: null,
  [Event.PRODUCT_BACK]: null,
});

/** Client -> server commands (docs/protocol.md, "Client -> server"). */
/** The first frame a client sends on a room socket: {type: AUTH, token}. A token never goes in the URL. */
export const AUTH = "auth";

export const Command = Object.freeze({
  CHAT_SEND: "chat.send",
  LIKE: "like",
  PRODUCT_PIN: "product.pin",
  PRODUCT_UNPIN: "product.unpin",
  BAG_SET: "bag.set",
  ROOM_STATUS: "room.status",
  CHAT_DELETE: "chat.delete",
  CHAT_MUTE: "chat.mute",
  CHAT_BAN: "chat.ban",
  CHAT_UNBAN: "chat.unban",
  CHAT_SLOW_MODE: "chat.slow_mode",
});

export const MAX_LIKES_PER_MESSAGE = 50;
export const LIKE_BATCH_MS = 250;

/** Error codes of `error` replies, and the one a page makes itself. */
export const ErrorCode = Object.freeze({
  BAD_JSON: "bad_json",
  BAD_REQUEST: "bad_request",
  UNKNOWN_TYPE: "unknown_type",
  FORBIDDEN: "forbidden",
  NOT_FOUND: "not_found",
  TOO_LONG: "too_long",
  RATE_LIMITED: "rate_limited",
  SLOW_MODE: "slow_mode",
  MUTED: "muted",
  BANNED: "banned",
  BLOCKED_WORD: "blocked_word",
  UNAVAILABLE: "unavailable",
  INTERNAL: "internal",
  DISCONNECTED: "disconnected", // client side: the socket dropped before the reply came
});

const CLIENT_ERROR_CODES = new Set([ErrorCode.DISCONNECTED]);

/** WebSocket close codes. 4000-4499: reconnect (with backoff); 4500-4999: do not, with the same token. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  MESSAGE_TOO_BIG: 1009,
  SERVER_RESTARTING: 1012,
  TRY_AGAIN_LATER: 1013,
  TOO_SLOW: 4000,
  FLOODING: 4029,
  TOO_MANY_CONNECTIONS: 4030,
  INVALID_TOKEN: 4500,
  FORBIDDEN_ORIGIN: 4501,
  SIGNED_OUT: 4503,
  UNKNOWN_ROOM: 4504,
});

const CLOSE_MEANINGS = {
  [CloseCode.MESSAGE_TOO_BIG]: "a message was too large",
  [CloseCode.SERVER_RESTARTING]: "the server is restarting",
  [CloseCode.TRY_AGAIN_LATER]: "the server is briefly unavailable",
  [CloseCode.TOO_SLOW]: "the connection fell behind",
  [CloseCode.FLOODING]: "too many messages were sent",
  [CloseCode.TOO_MANY_CONNECTIONS]: "this room is open in too many tabs or devices",
  [CloseCode.SIGNED_OUT]: "you were signed out",
  [CloseCode.INVALID_TOKEN]: "the sign-in expired or is not valid",
  [CloseCode.FORBIDDEN_ORIGIN]: "this page may not join the room",
  [CloseCode.UNKNOWN_ROOM]: "this room does not exist",
};

/** What a close code means, in words for people. */
export function closeMeaning(code) {
  return CLOSE_MEANINGS[code] || "the connection was lost";
}

/** True when a socket closed with this code may reconnect with the same token. */
export function mayReconnect(code) {
  return code < 4500 || code > 4999;
}

/** The protocol's names and numbers in the shape of server.protocol.wire() (tests/test_protocol_mirror.py). */
export function wire() {
  return {
    events: {
      durable: [...DURABLE_EVENTS].sort(),
      latest: { ...LATEST_VALUE_KEYS },
      private: [...PRIVATE_EVENTS].sort(),
      personal: { ...PERSONAL_EVENTS },
    },
    sale_events: [...SALE_EVENTS],
    sale_statuses: [...SALE_STATUSES],
    auth: AUTH,
    commands: Object.values(Command).sort(),
    error_codes: Object.values(ErrorCode)
      .filter((code) => !CLIENT_ERROR_CODES.has(code))
      .sort(),
    close_codes: { ...CloseCode },
    room_statuses: [...ROOM_STATUSES],
    limits: { max_likes_per_message: MAX_LIKES_PER_MESSAGE },
  };
}
