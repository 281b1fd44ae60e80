// The viewer room: video, the "now presenting" card with its flash sale, checkout, chat and hearts; the bag through
// bag.js, regular-price buying and "Notify me" through shelf.js, the buyer's own orders through my-orders.js, the
// shipping address through checkout-address.js; sharing and earning through share.js, group buys through
// group-buy.js, "Ask the seller" through ask-seller.js, giveaways through giveaway.js and auctions through auction.js.

import { ApiError, Session, api, randomKey, retrying, storage } from "./api.js";
import { AskSeller } from "./ask-seller.js";
import { Auctions } from "./auction.js";
import { Bag } from "./bag.js";
import { appendLine, chatLine, removeLine, scrollToEnd } from "./chat-view.js";
import { CheckoutAddress } from "./checkout-address.js";
import { Giveaways } from "./giveaway.js";
import { GROUP_REFUSAL_TITLES, GroupBuys, isGroupOrder } from "./group-buy.js";
import { MyOrders } from "./my-orders.js";
import {
  CloseCode,
  Command,
  Event,
  LIKE_BATCH_MS,
  MAX_LIKES_PER_MESSAGE,
  PERSONAL_EVENTS,
  SALE_EVENTS,
  closeMeaning,
} from "./protocol.js";
import { RoomSocket, SocketState } from "./room-socket.js";
import { sendCode, submitting } from "./sign-in.js";
import { t } from "./strings/room.js"; // room-language.js picked the language before this module runs
import { RoomState, saleStatus } from "./room-state.js";
import { Sharing } from "./share.js";
import { Shelves, regularPriceLabel, shelfUnits } from "./shelf.js";
import { $, clock, compact, h, money, orderNumber, safeImage, sentence, text, toast } from "./ui.js";
import { watch } from "./webrtc.js";
import { HlsPlayer, hlsUrl } from "./hls-player.js";
import { fitFor, orientation } from "./video-fit.js";

const roomId = new URLSearchParams(location.search).get("room") || "demo";
const stage = $("#stage");
const video = $("#video");
const chatList = $("#chat");
const toasts = $("#toasts");

const MAX_CHAT_NODES = 120;
const HEART_SHADES = 6; // --heart-1 … --heart-6 in base.css
const STATUS_LABELS = { live: t("status.live"), scheduled: t("status.soon"), ended: t("status.ended") };

const room = new RoomState({ chatLimit: MAX_CHAT_NODES });
// switching: the shopper signs in or out on purpose; the old session's end (socket 4503) is not news
const state = { quantity: 1, switching: false };
// The shopper's session (localStorage: it outlives the tab); a guest one until they sign in.
const session = new Session(storage("local"), "livecart.session");

let socket = null;

// Share and earn: the share dialog, a shared link's visit, the sharer's earnings, the top sharers (share.js).
const sharing = new Sharing({
  room,
  session,
  roomId,
  toasts,
  signIn: () => openSignIn({ reason: t("share.signIn") }),
});

// Group buys: the offer's card, open groups, the viewer's own group; it pays through this page's checkout.
const groups = new GroupBuys({
  room,
  session,
  roomId,
  toasts,
  now: () => (socket ? socket.serverNow() : Date.now()),
  buy: (sale, quantity, offer) => buy(sale, quantity, offer),
  payHeld: (sale, order, detail) => payHeld(sale, order, detail),
});

// Ask the seller: the buyer's thread with the room's shop; its personal events never enter the room's state.
const asking = new AskSeller({ room, session, roomId, toasts, signIn: openSignIn });

// Live moments: the giveaway card (enter, the draw, a winner's claim) and the auction card (bids; a win pays through
// this page's checkout).
const moments = {
  room,
  session,
  toasts,
  now: () => (socket ? socket.serverNow() : Date.now()),
  signIn: openSignIn,
  openSheet: (selector) => openSheet(selector),
  closeSheets: () => closeSheets(),
  dismissed: () => renderCard(),
};
const giveaways = new Giveaways(moments);
const auctions = new Auctions({ ...moments, payHeld: (sale, order, detail) => payHeld(sale, order, detail) });

// The buyer's own orders with this shop: the card's "Purchased ✓" and "Limit reached", no toast of their own purchase.
const mine = new MyOrders({
  session,
  room,
  now: () => (socket ? socket.serverNow() : Date.now()),
  changed: () => ownOrdersChanged(),
  retoast: (event) => saleToast(event),
});

// Regular-price buying: each product's shelf, "Notify me when it's back", the `product.back` toast.
const shelves = new Shelves({
  room,
  session,
  roomId,
  toasts,
  buy: (sale, quantity) => buy(sale, quantity),
  signIn: openSignIn,
  changed: () => ownOrdersChanged(),
});

// The bag ("Products in this show"): every product with Buy (a live deal's, or its shelf's) or "Notify me".
const bag = new Bag({
  room,
  shelves,
  mine,
  now: () => (socket ? socket.serverNow() : Date.now()),
  buy: (sale, quantity) => buy(sale, quantity),
  openSheet: (selector) => openSheet(selector),
});

// The checkout's shipping address: asked once, then a summary with Change.
const address = new CheckoutAddress({ session });

function ownOrdersChanged() {
  if (!room.id) return;
  renderCard();
  bag.render();
}

// --- start -----------------------------------------------------------------------------------

/** A fresh access token of the shopper's session; a new guest session when there is none (or it ended). */
async function viewerToken({ rejected } = {}) {
  const token = await session.token({ rejected });
  if (token) return token;
  await session.guest();
  return session.token();
}

async function start() {
  renderAccount();
  let token;
  try {
    token = await viewerToken();
  } catch (error) {
    showPoster(t("poster.unreachable"), error.message);
    return;
  }
  openSocket(token);
  sharing.ready();
  groups.ready();
  window.livecart = { get socket() { return socket; }, room, session, sharing, groups, asking, giveaways, auctions };
  Object.assign(window.livecart, { mine, shelves, bag, address, viewing, held });
  setInterval(tick, 250);
}

/** (Re)join the room on a new socket with this token: a fresh snapshot. */
function openSocket(token) {
  socket?.close();
  socket = new RoomSocket({
    roomId,
    token,
    onSnapshot: render,
    onEvent: apply,
    onState: connectionChanged,
    refreshToken: (rejected) => viewerToken({ rejected }),
  });
  socket.open();
}

/** The shopper changed (signed in or out): the room socket and the video carry the new session's token. */
async function rejoin() {
  openSocket(await viewerToken());
  if (viewing.session) {
    stopWatching();
    renderStream();
  }
}

function connectionChanged(status, detail) {
  stage.dataset.connection = status;
  const banner = $("#connection");
  banner.classList.toggle("failed", status === SocketState.CLOSED);
  $("#connection-actions").hidden = true;
  if (status === SocketState.RECONNECTING) {
    const crowded = detail.code === CloseCode.TOO_MANY_CONNECTIONS;
    text($("#connection-text"), t(crowded ? "connection.crowded" : "connection.reconnecting"));
    banner.hidden = false;
  } else if (status === SocketState.OPEN) {
    banner.hidden = true;
    asking.connected(); // personal events missed while away: the thread is read again
  } else if (status === SocketState.CLOSED && detail.code === CloseCode.SIGNED_OUT) {
    signedOut();
  } else if (status === SocketState.CLOSED && detail.code !== CloseCode.NORMAL) {
    if (detail.code === CloseCode.UNKNOWN_ROOM) {
      showPoster(t("poster.unknown"), t("poster.unknownNote"));
      banner.hidden = true;
    } else {
      text($("#connection-text"), t("connection.lost", { reason: closeMeaning(detail.code) }));
      banner.hidden = false;
    }
  }
}

/** The server ended this socket's session: carry on if this browser has signed in since, else say so. */
async function signedOut() {
  if (state.switching) return; // signing in ends the guest's session: the new one rejoins
  const closed = socket;
  const token = await session.token().catch(() => null);
  if (socket !== closed) return;
  if (token && token !== closed.token) {
    rejoin(); // signed in (or out) meanwhile, in this tab or another
    return;
  }
  state.switching = true; // the banner says it: no toast too
  session.forget();
  state.switching = false;
  stopWatching();
  text($("#connection-text"), "You were signed out.");
  $("#connection-actions").hidden = false;
  $("#connection").hidden = false;
}

$("#connection-signin").addEventListener("click", () => openSignIn());
$("#connection-guest").addEventListener("click", () => rejoin().catch((error) => toast(toasts, error.message)));

function showPoster(title, note) {
  text($("#poster-title"), title);
  text($("#poster-note"), note);
}

// --- the whole room (snapshot) ------------------------------------------------------------------

function render(snapshot) {
  room.load(snapshot);
  held.events.length = 0; // a snapshot is newer than anything held for the HLS picture
  likes.seen = room.likes;
  chatList.replaceChildren();
  for (const message of room.chat) addChat(message);
  renderRoom();
  renderStatus();
  renderStream();
  renderSlowMode();
  text($("#viewers"), compact(room.viewers));
  renderLikes();
  bag.render();
  mine.load(); // what the buyer bought (or holds) in this shop's sales
  if (room.pinned) shelves.want(room.pinned.id, { soon: true });
  groups.snapshot();
  giveaways.snapshot();
  auctions.snapshot();
  renderCard();
  sharing.snapshot();
  asking.snapshot();
  scrollToEnd(chatList, true);
}

function renderRoom() {
  const title = room.title || t("room.untitled");
  text($("#room-title"), title);
  text($("#room-sub"), `@${room.merchantId}`);
  text($("#avatar"), title.trim().charAt(0).toUpperCase() || "L");
  document.title = `${title} · livecart`;
}

// --- one event ------------------------------------------------------------------------------------

function apply(event) {
  if (Object.hasOwn(PERSONAL_EVENTS, event.type)) {
    personal(event); // addressed to this person: not the room's
    return;
  }
  if (hold(event)) return; // an HLS viewer sees the product and the sale when the picture shows them
  if (!room.apply(event)) return;
  switch (event.type) {
    case Event.ROOM_STATUS:
      renderStatus();
      break;
    case Event.STREAM_STATE:
      renderStream();
      break;
    case Event.PRODUCT_PINNED:
      state.quantity = 1;
      shelves.pinned(event.product.id);
      groups.salesChanged();
      renderCard();
      bag.render();
      break;
    case Event.PRODUCT_UNPINNED:
    case Event.STOCK:
      groups.salesChanged();
      renderCard();
      bag.render();
      break;
    case Event.BAG_CHANGED:
      bag.bagChanged();
      break;
    case Event.CHAT_MESSAGE:
      addChat(event.message);
      scrollToEnd(chatList, false);
      break;
    case Event.CHAT_DELETED:
      removeLine(chatList, event.message_id);
      break;
    case Event.CHAT_SLOW_MODE:
      renderSlowMode();
      break;
    case Event.VIEWERS:
      text($("#viewers"), compact(room.viewers));
      break;
    case Event.LIKES:
      likesArrived();
      break;
    case Event.SALE_TOAST:
      saleToast(event);
      break;
    case Event.SHARERS:
      sharing.sharersChanged();
      break;
    case Event.EARNINGS:
      sharing.earningsArrived(event);
      break;
    case Event.GROUPS:
      groups.boardChanged(event.sale_id);
      break;
    case Event.GROUP:
      groups.groupArrived(event);
      break;
    case Event.GIVEAWAY:
      giveaways.cardChanged();
      renderCard();
      break;
    case Event.AUCTION:
      auctions.cardChanged(event.id);
      renderCard();
      break;
    default:
      if (SALE_EVENTS.includes(event.type) || event.type === Event.SALE_UPDATED) {
        const sale = event.sale;
        const deal = t(sale.group ? "group.tag" : "card.flashDeal");
        if (event.type === Event.SALE_STARTED && !sale.shelf) {
          toast(toasts, t("toast.dealLive", { deal, title: sale.product.title }), { kind: "buy" });
        }
        const over = event.type === Event.SALE_SOLD_OUT || event.type === Event.SALE_ENDED;
        if (over && !sale.shelf && sale.product.id === room.pinned?.id) shelves.dealOver(sale.product.id);
        groups.salesChanged();
        renderCard();
        bag.render();
      }
  }
}

function personal(event) {
  switch (event.type) {
    case Event.GIVEAWAY_WON:
      giveaways.wonArrived(event);
      break;
    case Event.AUCTION_OUTBID:
      auctions.outbidArrived(event);
      break;
    case Event.AUCTION_WON:
      auctions.wonArrived(event);
      break;
    case Event.PRODUCT_BACK:
      shelves.backArrived(event);
      break;
    default:
      asking.eventArrived(event);
  }
}

function renderStatus() {
  const status = room.status;
  stage.dataset.status = status;
  text($("#live-badge"), STATUS_LABELS[status] || status);
  $("#ended").hidden = status !== "ended";
  if (status === "ended") stopWatching();
  else renderStream();
  posterText();
}

function posterText() {
  const { status, stream } = room;
  if (status === "ended") showPoster(t("poster.ended"), t("poster.endedNote"));
  else if (status === "live" && stream !== "online") showPoster(t("poster.paused"), t("poster.pausedNote"));
  else if (stream !== "online") showPoster(t("poster.soon"), t("poster.soonNote"));
  else showPoster(t("poster.connecting"), "");
}

// --- video (WHEP, or LL-HLS for the crowd) ------------------------------------------------------------

// WebRTC first; HLS when the server says WebRTC is full (409 webrtc_full) or a peer has not connected in
// WEBRTC_CONNECT_MS. The page stays on HLS until the stream goes offline (the next show tries WebRTC again).
const WEBRTC_CONNECT_MS = 5000;
const viewing = { session: null, starting: false, retry: null, attempt: 0, mode: "webrtc", hls: null };

function renderStream() {
  const stream = room.stream;
  stage.dataset.stream = stream;
  if (stream === "online" && room.status !== "ended") startWatching();
  else stopWatching();
  posterText();
}

async function startWatching() {
  if (viewing.session || viewing.starting || viewing.hls) return;
  if (viewing.mode === "hls") {
    startHls();
    return;
  }
  viewing.starting = true;
  clearTimeout(viewing.retry);
  try {
    const watching = await watch(roomId, viewerToken, (stream) => {
      if (video.srcObject !== stream) video.srcObject = stream;
      play();
    });
    viewing.session = watching;
    stage.dataset.transport = "webrtc";
    let lost = null;
    const connecting = setTimeout(() => switchToHls(watching), WEBRTC_CONNECT_MS);
    watching.pc.addEventListener("connectionstatechange", () => {
      const pcState = watching.pc.connectionState;
      if (pcState === "connected") {
        viewing.attempt = 0;
        clearTimeout(lost);
        clearTimeout(connecting);
      } else if (pcState === "failed") {
        restartWatching(watching);
      } else if (pcState === "disconnected") {
        clearTimeout(lost);
        lost = setTimeout(() => restartWatching(watching), 4000);
      }
    });
  } catch (error) {
    viewing.starting = false;
    if (error.code === "webrtc_full") {
      viewing.mode = "hls"; // the room has all the WebRTC viewers it takes: the crowd watches over HLS
      startHls();
      return;
    }
    // 409: the host's video isn't up yet; anything else: try again with backoff
    retryWatching();
  } finally {
    viewing.starting = false;
  }
}

/** WebRTC did not connect in time (a network that blocks UDP, no TURN): watch over HLS instead. */
function switchToHls(session) {
  if (viewing.session !== session || session.pc.connectionState === "connected") return;
  viewing.session = null;
  session.stop();
  viewing.mode = "hls";
  startHls();
}

function startHls() {
  if (viewing.hls || room.stream !== "online" || room.status === "ended") return;
  clearTimeout(viewing.retry);
  video.srcObject = null;
  stage.dataset.transport = "hls";
  const player = new HlsPlayer(video, hlsUrl(roomId), {
    onFatal: () => {
      if (viewing.hls !== player) return;
      player.stop();
      viewing.hls = null;
      releaseHeld();
      retryWatching(); // still online: the playlist comes back (a new stream), or the room goes offline
    },
  });
  viewing.hls = player;
  player.start().then(play, () => player.onFatal("hls.js did not load"));
}

function restartWatching(session) {
  if (viewing.session !== session) return;
  viewing.session = null;
  session.stop();
  retryWatching();
}

function retryWatching() {
  if (room.stream !== "online" || room.status === "ended") return;
  const delay = Math.min(8000, 600 * 2 ** viewing.attempt++) * (0.5 + Math.random() / 2);
  clearTimeout(viewing.retry);
  viewing.retry = setTimeout(startWatching, delay);
}

function stopWatching() {
  clearTimeout(viewing.retry);
  viewing.attempt = 0;
  stage.dataset.playing = "false";
  $("#unmute").hidden = true;
  if (viewing.session) {
    // offline: the server ended every viewer's session with the host's, so there is nothing to DELETE
    viewing.session.stop({ ended: room.stream !== "online" });
    viewing.session = null;
  }
  if (viewing.hls) {
    viewing.hls.stop();
    viewing.hls = null;
  }
  viewing.mode = "webrtc";
  delete stage.dataset.transport;
  releaseHeld();
  video.srcObject = null;
}

// --- events in step with the HLS picture ------------------------------------------------------------
// An HLS viewer sees the picture 1-3 s after WebRTC viewers do. The product the host pins and the deal they start
// are held until the picture on screen (hls.js playingDate: EXT-X-PROGRAM-DATE-TIME, the server's clock when it
// received that picture) has passed the event's `ts` (the server's clock when it happened): card and picture agree.
// Stock changes queue behind a held sale so they apply after it. At most HOLD_MAX_MS, whatever the player does.

const HELD = new Set([Event.PRODUCT_PINNED, Event.PRODUCT_UNPINNED, Event.SALE_UPDATED, ...SALE_EVENTS]);
const HOLD_MAX_MS = 10_000;
const held = { events: [], timer: null, released: [] };

function hold(event) {
  if (event.held || !viewing.hls || typeof event.ts !== "number") return false;
  if (!HELD.has(event.type) && !(event.type === Event.STOCK && held.events.length)) return false;
  held.events.push({ event, since: Date.now() });
  held.timer ||= setInterval(releaseDue, 50);
  return true;
}

function releaseDue() {
  const shown = viewing.hls?.programTime() ?? null;
  while (held.events.length) {
    const { event, since } = held.events[0];
    const due = shown !== null && shown >= event.ts;
    if (!due && Date.now() - since < HOLD_MAX_MS) break;
    held.events.shift();
    held.released.push({ type: event.type, ts: event.ts, shown, waited: Date.now() - since });
    if (held.released.length > 20) held.released.shift();
    apply({ ...event, held: true });
  }
  if (!held.events.length) {
    clearInterval(held.timer);
    held.timer = null;
  }
}

/** Apply everything held at once (the page left HLS). */
function releaseHeld() {
  const events = held.events.splice(0);
  clearInterval(held.timer);
  held.timer = null;
  for (const { event } of events) apply({ ...event, held: true });
}

function play() {
  video.play().catch(() => {
    video.muted = true;
    video.play().catch(() => {});
  });
  $("#unmute").hidden = !video.muted;
}

video.addEventListener("playing", () => {
  stage.dataset.playing = "true";
});

/** Fit the picture by its shape (video-fit.js): a portrait stream fills the phone, a landscape one is letterboxed. */
function fitVideo() {
  const { videoWidth: width, videoHeight: height } = video;
  if (!width || !height) {
    delete stage.dataset.orientation;
    delete stage.dataset.fit;
    return;
  }
  stage.dataset.orientation = orientation(width, height);
  stage.dataset.fit = fitFor(width, height, stage.clientWidth, stage.clientHeight);
}

for (const name of ["loadedmetadata", "resize", "emptied"]) video.addEventListener(name, fitVideo);
addEventListener("resize", fitVideo);

$("#unmute").addEventListener("click", () => {
  video.muted = false;
  video.play().catch(() => {});
  $("#unmute").hidden = true;
});

addEventListener("pagehide", () => viewing.session?.stop({ keepalive: true }));

// --- the card and its sale ---------------------------------------------------------------------------

const STATUS_ORDER = { live: 0, scheduled: 1, sold_out: 2, ended: 3 };

/** The sale the card shows: of the pinned product (live first), or any sale on now when nothing is pinned. A shelf
 * (the regular price) is never a deal: the card offers it beside one (renderShelf). */
function cardSale() {
  const now = socket.serverNow();
  const pinnedId = room.pinned?.id;
  const sales = [...room.sales.values()].filter(
    (sale) =>
      !sale.group && !sale.shelf && (pinnedId ? sale.product.id === pinnedId : saleStatus(sale, now) === "live"),
  );
  sales.sort(
    (a, b) => STATUS_ORDER[saleStatus(a, now)] - STATUS_ORDER[saleStatus(b, now)] || b.starts_at - a.starts_at,
  );
  return sales[0] || null;
}

// The shelf the card's Buy buys from (the product at its regular price, no deal on), or null: a deal's Buy.
let cardShelf = null;

function renderCard() {
  const card = $("#card");
  const sale = cardSale();
  const product = room.pinned || sale?.product;
  const elsewhere = (id) => groups.showsProduct(id) || giveaways.showsProduct(id) || auctions.showsProduct(id);
  if (!product || (!sale && elsewhere(product.id))) {
    card.hidden = true; // nothing presented, or the group-buy, giveaway or auction card shows it
    renderDealChip(null, null, 0);
    return;
  }
  card.hidden = false;
  const title = $("#card-title");
  if (card.dataset.productId !== product.id) title.setAttribute("aria-expanded", "false");
  card.dataset.productId = product.id;
  const image = $("#card-image");
  const src = safeImage(product.image_url);
  if (image.getAttribute("src") !== src) image.src = src;
  text(title, product.title);
  const now = socket.serverNow();
  const status = sale ? saleStatus(sale, now) : null;
  renderDealChip(sale, status, now);
  cardShelf = null;
  if (!sale || status === "ended") {
    delete card.dataset.sale;
    card.dataset.saleId = "";
    text($("#card-price"), money(product.price, product.currency));
    $("#card-regular").hidden = true;
    $("#card-off").hidden = true;
    $("#card-deal").hidden = true;
    $("#card-stock").hidden = true;
    $("#card-timer").hidden = !sale;
    text($("#card-timer"), sale ? "Deal ended" : "");
    $("#card-quantity").hidden = true;
    renderBuyButton(null, null);
    renderShelf(product, sale ? "ended" : null);
    return;
  }
  card.dataset.sale = status;
  card.dataset.saleId = sale.id;
  text($("#card-price"), money(sale.price, sale.currency));
  const regular = product.price;
  const discounted = regular > sale.price;
  $("#card-regular").hidden = !discounted;
  text($("#card-regular"), money(regular, product.currency));
  $("#card-off").hidden = !discounted;
  text($("#card-off"), discounted ? `−${Math.round((1 - sale.price / regular) * 100)}%` : "");
  $("#card-deal").hidden = false;
  renderStock(sale.available, sale.quantity, stockText(sale, status));
  renderTimer(sale, status, now);
  // one buyer's units: the sale's limit less what they hold or bought already
  const limit = Math.min(Math.max(0, sale.per_user_limit - mine.units(sale.id)), Math.max(1, sale.available));
  state.quantity = Math.max(1, Math.min(state.quantity, limit));
  const own = mine.state(sale.id, sale.per_user_limit);
  $("#card-quantity").hidden = !(status === "live" && limit > 1 && sale.available > 1 && own !== "limit");
  text($("#quantity-value"), state.quantity);
  renderBuyButton(sale, status);
  // a sold-out deal offers the regular-price item, or "Notify me" (not to whoever got it)
  renderShelf(product, status === "sold_out" && !mine.paid(sale.id) ? "sold_out" : "deal");
}

function renderStock(available, quantity, words) {
  $("#card-stock").hidden = false;
  const fill = quantity ? Math.max(0, available) / quantity : 0;
  $("#card-stock-fill").style.width = `${Math.round(fill * 100)}%`;
  text($("#card-stock-text"), words);
  $("#card-stock").dataset.available = String(available);
}

function stockText(sale, status) {
  if (status === "sold_out") return t("card.soldOut");
  if (status === "scheduled") return t("card.available", { count: sale.quantity });
  if (sale.available <= 0) return t("card.allClaimed");
  return t("buy.left", { count: sale.available });
}

/**
 * The product's shelf on the card. `deal`: "deal" while a deal is on (the shelf waits), "sold_out" or "ended" for a
 * deal that is over (the regular-price item, or "Notify me when it's back"), null with no deal (the shelf's Buy, or
 * "Notify me" once it sold out).
 */
function renderShelf(product, deal) {
  const fallback = $("#card-fallback");
  const known = deal === "deal" ? undefined : shelves.of(product.id);
  if (deal !== "deal" && known === undefined) shelves.want(product.id, { soon: true });
  const shelf = known?.shelf ?? null;
  const units = shelfUnits(shelf);
  $("#card").dataset.offer = "";
  fallback.hidden = true;
  if (!known || (deal === null && !shelf)) return; // a deal on, not read yet, or no shelf and no deal: nothing to add
  if (deal === null && units > 0) {
    // no deal: the product at its regular price, bought from its shelf with the card's Buy
    cardShelf = shelf;
    $("#card").dataset.offer = "shelf";
    $("#card").dataset.saleId = shelf.sale_id;
    text($("#card-price"), money(shelf.price, shelf.currency));
    renderStock(units, units + (shelf.held || 0) + (shelf.sold || 0), t("buy.left", { count: units }));
    renderBuyButton(shelfSale(product, shelf), "live");
    return;
  }
  if (deal === null) renderStock(0, 1, t("card.soldOut"));
  $("#buy").hidden = true;
  fallback.hidden = false;
  $("#card").dataset.offer = units > 0 ? "regular" : "notify";
  if (units > 0) {
    const own = mine.state(shelf.sale_id, shelf.per_user_limit);
    const label = own === "limit" ? t("buy.limit") : regularPriceLabel(shelf);
    renderFallback(
      h(
        "button.button-primary.regular-buy",
        {
          type: "button",
          disabled: own === "limit",
          dataset: { testid: "regular-buy" },
          on: { click: () => shelves.buyShelf(shelf) },
        },
        label,
      ),
    );
  } else {
    renderFallback(shelves.notifyButton(product));
  }
}

/** Put this button in the card's fallback place, unless the same one is there (a tap is not lost to a redraw). */
function renderFallback(button) {
  const fallback = $("#card-fallback");
  const shown = fallback.firstElementChild;
  const same =
    shown &&
    shown.className === button.className &&
    shown.textContent === button.textContent &&
    shown.disabled === button.disabled;
  if (same && shown.dataset.productId === button.dataset.productId) return;
  fallback.replaceChildren(button);
}

/** A shelf as a sale the checkout buys from: the product at its regular price. */
function shelfSale(product, shelf) {
  return {
    id: shelf.sale_id,
    product,
    price: shelf.price,
    currency: shelf.currency,
    per_user_limit: shelf.per_user_limit,
    available: shelfUnits(shelf),
    shelf: true,
  };
}

function renderTimer(sale, status, now) {
  const timer = $("#card-timer");
  timer.hidden = false;
  if (status === "scheduled") text(timer, t("card.startsIn", { clock: clock(sale.starts_at - now) }));
  else if (status === "live") text(timer, t("card.endsIn", { clock: clock(sale.ends_at - now) }));
  else text(timer, "");
}

/** A live deal's countdown on the video. */
function renderDealChip(sale, status, now) {
  const chip = $("#deal-chip");
  chip.hidden = status !== "live";
  if (chip.hidden) return;
  text($(".deal-chip-label", chip), t(sale.price < sale.product.price ? "card.flashDeal" : "card.deal"));
  text($("#deal-chip-clock"), clock(sale.ends_at - now));
}

function renderBuyButton(sale, status) {
  const button = $("#buy");
  button.hidden = !sale || status === "ended";
  if (!sale) return;
  button.dataset.own = "";
  button.removeAttribute("aria-label");
  if (checkout.order && checkout.sale.id === sale.id && checkout.step === "hold") {
    button.disabled = false;
    text(button, t("card.payIn", { clock: clock(checkout.deadline - Date.now()) }));
    return;
  }
  const held = mine.held(sale.id); // a hold from before a reload, or closed without paying
  if (held) {
    button.disabled = false;
    button.dataset.own = "held";
    text(button, t("card.payIn", { clock: clock(held.hold_expires_at - socket.serverNow()) }));
    return;
  }
  const own = mine.state(sale.id, sale.per_user_limit);
  const labels = { scheduled: t("status.soon"), sold_out: t(own === "purchased" ? "buy.purchased" : "card.soldOut") };
  if (status === "live" && sale.available <= 0) labels.live = t("card.claimed");
  else if (own === "purchased") labels.live = t("buy.purchased"); // a tap buys one more, up to the limit
  const label = own === "limit" ? t("buy.limit") : labels[status] || t("card.buy");
  const open = status === "live" && sale.available > 0 && own !== "limit";
  const needs = open && !own ? buyerNeeds(sale) : null;
  button.disabled = !open;
  button.dataset.own = own || "";
  button.dataset.needs = needs || "";
  if (own === "purchased" && open) button.setAttribute("aria-label", t("card.buyOneMore"));
  text(button, needs ? NEEDS[needs].button : label);
}

/** What the shopper must do before buying in this sale: "sign_in", "phone", or null (they may buy). */
function buyerNeeds(sale) {
  const user = session.user;
  if (sale.buyers === "anyone" || (sale.shelf && sale.buyers === undefined)) return null; // a shelf: the server says
  if (!user || user.guest) return "sign_in";
  if (sale.buyers === "verified_phone" && !user.phone_verified) return "phone";
  return null;
}

const NEEDS = {
  sign_in: {
    button: t("needs.signIn"),
    reason: t("needs.signInReason"),
  },
  phone: {
    button: t("needs.phone"),
    reason: t("needs.phoneReason"),
  },
};
const REFUSED_NEEDS = { sign_in_required: "sign_in", phone_required: "phone" };

function tick() {
  if (!socket || !room.id) return;
  const sale = cardSale();
  if (sale || cardShelf) renderCard();
  groups.tick();
  giveaways.tick();
  auctions.tick();
  if (checkout.step === "hold") renderHold();
}

$("#buy").addEventListener("click", () => {
  const card = $("#card");
  const sale = cardShelf ? shelfSale(room.pinned, cardShelf) : room.sales.get(card.dataset.saleId);
  if (!sale) return;
  const held = mine.held(sale.id);
  if (checkout.order && checkout.sale.id === sale.id && checkout.step === "hold") openSheet("#checkout");
  else if (held) payHeld(sale, held, orderDetail(sale, held.quantity));
  else if (cardShelf) shelves.buyShelf(cardShelf);
  else buy(sale, state.quantity);
});

$("#card-title").addEventListener("click", (click) => {
  const title = click.currentTarget;
  title.setAttribute("aria-expanded", String(title.getAttribute("aria-expanded") !== "true"));
});

$("#quantity-less").addEventListener("click", () => {
  state.quantity = Math.max(1, state.quantity - 1);
  renderCard();
});

$("#quantity-more").addEventListener("click", () => {
  const sale = room.sales.get($("#card").dataset.saleId);
  if (!sale) return;
  const left = Math.max(1, sale.per_user_limit - mine.units(sale.id));
  state.quantity = Math.min(state.quantity + 1, left, Math.max(1, sale.available));
  renderCard();
});

// --- checkout: hold, pay, done ---------------------------------------------------------------------

// offer: a group's open or join request ({path, detail, price, retry(code)}, group-buy.js); null for a flash sale
const checkout = { step: null, sale: null, order: null, key: null, deadline: 0, quantity: 1, offer: null };
const sheet = $("#checkout");

const REFUSAL_TITLES = {
  sold_out: t("refused.soldOut"),
  limit_reached: t("refused.limit"),
  hold_expired: t("refused.expired"),
  not_started: t("refused.notStarted"),
  ended: t("refused.ended"),
  payment_declined: t("refused.declined"),
  network: t("refused.offline"),
  ...GROUP_REFUSAL_TITLES,
};

/** Reserve and take the shopper to the payment step: a flash-sale purchase, or with `offer` a group's open or join. */
async function buy(sale, quantity, offer = null) {
  if (checkout.step === "reserving") return;
  const needs = buyerNeeds(sale);
  if (needs) {
    askToSignIn(needs, sale, quantity, offer);
    return;
  }
  Object.assign(checkout, { sale, order: null, key: randomKey("buy_"), quantity, offer });
  setStep("reserving");
  const detail = offer ? offer.detail : orderDetail(sale, quantity);
  orderLine(sale, detail, offer ? offer.price : sale.price * quantity);
  $("#pay-error").hidden = true;
  openSheet("#checkout");
  try {
    const order = await retrying(() =>
      api(offer ? offer.path : `/api/sales/${encodeURIComponent(sale.id)}/purchases`, {
        method: "POST",
        session,
        body: offer ? {} : { quantity },
        headers: { "Idempotency-Key": checkout.key },
      }),
    );
    const placed = orderOf(order);
    if (isGroupOrder(placed)) groups.orderPlaced(placed);
    mine.placed(placed);
    holdStarted(placed);
  } catch (error) {
    if (REFUSED_NEEDS[error.code]) {
      resetCheckout();
      closeSheets();
      askToSignIn(REFUSED_NEEDS[error.code], sale, quantity, offer);
    } else {
      failed(error);
    }
  }
}

/** "2 × $39.00 · flash deal", "1 × $59.00 · regular price". */
function orderDetail(sale, quantity) {
  const kind = t(sale.shelf ? "order.regular" : "order.flash");
  return t("order.detail", { quantity, price: money(sale.price, sale.currency), kind });
}

function orderLine(sale, detail, amount) {
  const product = sale.product;
  $("#order-image").src = safeImage(product.image_url);
  text($("#order-title"), product.title);
  text($("#order-detail"), detail);
  text($("#order-amount"), money(amount, sale.currency));
}

/** The payment step for an order held already (a group's, after a reload: group-buy.js). */
function payHeld(sale, order, detail) {
  if (checkout.order?.order_id !== order.order_id || checkout.step !== "hold") {
    Object.assign(checkout, { sale, order: null, key: null, quantity: order.quantity, offer: null });
    orderLine(sale, detail, order.amount);
    $("#pay-error").hidden = true;
    holdStarted(order);
  }
  openSheet("#checkout");
}

/** Open the sign-in dialog saying why; once signed in, the purchase is tried again. */
function askToSignIn(needs, sale, quantity, offer = null) {
  openSignIn({ reason: NEEDS[needs].reason, then: () => buy(room.sales.get(sale.id) || sale, quantity, offer) });
}

function orderOf(body) {
  return body && body.order ? body.order : body;
}

function holdStarted(order) {
  checkout.order = order;
  sheet.dataset.orderId = order.order_id; // "Ask about this order" (ask-seller.js)
  if (order.status === "paid") {
    done(order);
    return;
  }
  const left = order.hold_expires_at - (order.server_time ?? socket.serverNow());
  checkout.deadline = Date.now() + left;
  checkout.holdMs = Math.max(left, 1);
  text($("#order-amount"), money(order.amount, order.currency));
  text($("#pay"), t("checkout.payAmount", { amount: money(order.amount, order.currency) }));
  setStep("hold");
  address.prepare();
  renderHold();
  renderCard();
}

function renderHold() {
  const left = checkout.deadline - Date.now();
  text($("#hold-clock"), clock(left));
  const ring = $(".hold-ring");
  ring.style.setProperty("--left", String(Math.max(0, Math.min(1, left / checkout.holdMs))));
  $(".hold-timer").classList.toggle("urgent", left < 30000);
  if (left <= 0) {
    failed(new ApiError(409, "hold_expired", t("checkout.timedOut")));
  }
  const sale = room.sales.get(checkout.sale.id);
  if (sale && $("#card").dataset.saleId === sale.id) renderBuyButton(sale, saleStatus(sale, socket.serverNow()));
}

$("#pay-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  if (checkout.step !== "hold") return;
  setStep("paying");
  text($("#pay"), t("checkout.paying"));
  $("#pay-error").hidden = true;
  // One Idempotency-Key per payment attempt, kept for its retries after a network or server hiccup: if the
  // first try paid but its reply was lost, the retry gets the paid order back (not already_paid), and the
  // card is charged once. Another card after a decline is a new attempt, with a new key.
  const key = randomKey("pay_");
  const card = $("#card-number").value;
  const shipping = address.shipping(); // none: the account's saved address
  const body = shipping ? { card_number: card, shipping } : { card_number: card };
  const saleId = checkout.sale.id;
  let paid = false;
  mine.paying(saleId); // a toast that comes meanwhile waits: this payment may be in it
  try {
    const answer = await retrying(() =>
      api(`/api/orders/${encodeURIComponent(checkout.order.order_id)}/payment`, {
        method: "POST",
        session,
        body,
        headers: { "Idempotency-Key": key },
      }),
    );
    paid = true;
    address.paid(shipping);
    done(orderOf(answer));
  } catch (error) {
    if (error.code === "payment_declined" || error.code === "bad_request") {
      setStep("hold");
      text($("#pay"), t("checkout.payAmount", { amount: money(checkout.order.amount, checkout.order.currency) }));
      text($("#pay-error"), error.message);
      $("#pay-error").hidden = false;
    } else if (error.code === "already_paid") {
      done({ ...checkout.order, status: "paid" });
    } else {
      failed(error);
    }
  } finally {
    mine.settled(saleId, paid);
  }
});

$("#cancel-order").addEventListener("click", async () => {
  const order = checkout.order;
  resetCheckout();
  closeSheets();
  if (!order) return;
  try {
    const path = `/api/orders/${encodeURIComponent(order.order_id)}/cancel`;
    const cancelled = orderOf(await api(path, { method: "POST", session }));
    if (isGroupOrder(cancelled)) groups.orderChanged(cancelled);
    mine.moved(cancelled);
    toast(toasts, t("checkout.cancelled"));
  } catch {
    // it expires by itself
  }
});

function done(order) {
  const paid = t("checkout.paid", { number: orderNumber(order.order_id), amount: money(order.amount, order.currency) });
  const note = (shown) => {
    text($("#done-title"), shown.title);
    text($("#done-text"), shown.text);
  };
  note(isGroupOrder(order) ? groups.paidNote(order) : { title: t("checkout.done"), text: paid });
  sheet.dataset.orderId = order.order_id;
  mine.moved(order);
  if (checkout.sale?.shelf) shelves.bought(checkout.sale.product.id);
  if (isGroupOrder(order)) {
    // the group may fill a moment later (or the answer carry only its id): the note follows while it is shown
    const renote = (later) => checkout.step === "done" && sheet.dataset.orderId === order.order_id && note(later);
    groups.orderChanged(order, { renote });
  }
  checkout.order = null;
  setStep("done");
  renderCard();
}

function failed(error) {
  const code = error.code || "error";
  text($("#error-title"), REFUSAL_TITLES[code] || t("checkout.failed"));
  text($("#error-text"), error.message || t("checkout.wrong"));
  if (code === "hold_expired" && checkout.order) mine.moved({ ...checkout.order, status: "expired" });
  if (checkout.sale?.shelf) shelves.bought(checkout.sale.product.id); // sold out, or units back: read it again
  const sale = checkout.sale && (room.sales.get(checkout.sale.id) || (checkout.sale.shelf ? checkout.sale : null));
  const retry = $("#error-retry");
  const again = checkout.offer ? checkout.offer.retry(code) : sale?.available > 0 && code !== "limit_reached";
  retry.hidden = !(sale && saleStatus(sale, socket.serverNow()) === "live" && again);
  checkout.order = null;
  setStep("error");
  sheet.dataset.error = code;
  renderCard();
}

$("#error-retry").addEventListener("click", () => {
  const sale = room.sales.get(checkout.sale.id) || (checkout.sale.shelf ? checkout.sale : null);
  if (sale) buy(sale, checkout.quantity, checkout.offer);
});

function setStep(step) {
  checkout.step = step;
  sheet.dataset.step = step;
  delete sheet.dataset.error;
  $("#pay").disabled = step === "paying";
}

function resetCheckout() {
  Object.assign(checkout, { step: null, sale: null, order: null, key: null, offer: null });
}

// --- sheets ----------------------------------------------------------------------------------------

function openSheet(selector) {
  for (const other of document.querySelectorAll(".sheet")) other.hidden = true;
  $(selector).hidden = false;
  $("#backdrop").hidden = false;
}

function closeSheets() {
  for (const other of document.querySelectorAll(".sheet")) other.hidden = true;
  $("#backdrop").hidden = true;
  if (checkout.step && checkout.step !== "hold" && checkout.step !== "paying" && checkout.step !== "reserving") {
    resetCheckout();
  }
  renderCard();
}

$("#backdrop").addEventListener("click", closeSheets);
for (const button of document.querySelectorAll("[data-close]")) button.addEventListener("click", closeSheets);
addEventListener("keydown", (key) => {
  if (key.key === "Escape") closeSheets();
});

// --- the bag (bag.js) --------------------------------------------------------------------------------

$("#bag-button").addEventListener("click", () => bag.open());
$("#ended-bag").addEventListener("click", () => bag.open());

// --- chat ------------------------------------------------------------------------------------------

function addChat(message) {
  const mine = Boolean(session.user) && message.user_id === session.user.id;
  appendLine(chatList, chatLine(message, { mine }), MAX_CHAT_NODES);
}

function chatNotice(message) {
  chatList.append(h("li.notice", {}, message));
  scrollToEnd(chatList, true);
}

function renderSlowMode() {
  const note = $("#slow-note");
  note.hidden = !room.slowMode;
  text(note, room.slowMode ? t("chat.slow", { seconds: room.slowMode }) : "");
}

const CHAT_REFUSALS = {
  rate_limited: t("chat.tooFast"),
  banned: t("chat.banned"),
  blocked_word: t("chat.blockedWord"),
  too_long: t("chat.tooLong"),
  disconnected: t("chat.offline"),
  unavailable: t("chat.busy"),
};

function chatRefusal(error) {
  return CHAT_REFUSALS[error.code] || sentence(error.message || t("chat.notSent"));
}

$("#chat-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const input = $("#chat-input");
  const value = input.value.trim();
  if (!value || !socket) return;
  input.value = "";
  try {
    await socket.request(Command.CHAT_SEND, { text: value });
    giveaways.chatSent();
  } catch (error) {
    if (!input.value) input.value = value;
    chatNotice(chatRefusal(error));
  }
});

// --- hearts --------------------------------------------------------------------------------------

// pending: tapped, not sent yet; unconfirmed: sent, not yet in a total; seen: the total hearts were shown for
const likes = { pending: 0, unconfirmed: 0, seen: 0 };

function renderLikes() {
  text($("#likes"), compact(room.likes + likes.pending + likes.unconfirmed));
}

function heart(delay = 0) {
  const node = h("span.heart");
  node.append(document.getElementById("like").querySelector("svg").cloneNode(true));
  node.style.setProperty("--drift", `${Math.round((Math.random() - 0.5) * 90)}px`);
  node.style.setProperty("--tilt", `${Math.round((Math.random() - 0.5) * 40)}deg`);
  node.style.setProperty("--heart", `var(--heart-${1 + Math.floor(Math.random() * HEART_SHADES)})`);
  node.style.setProperty("--duration", `${(1.8 + Math.random() * 0.9).toFixed(2)}s`);
  node.style.animationDelay = `${delay}ms`;
  node.addEventListener("animationend", () => node.remove());
  const hearts = $("#hearts");
  if (hearts.children.length < 40) hearts.append(node);
}

$("#like").addEventListener("click", () => {
  heart();
  likes.pending += 1;
  renderLikes();
});

setInterval(() => {
  if (!likes.pending || !socket?.connected) return;
  const count = Math.min(likes.pending, MAX_LIKES_PER_MESSAGE);
  if (socket.send(Command.LIKE, { count })) {
    likes.pending -= count;
    likes.unconfirmed += count;
  }
}, LIKE_BATCH_MS);

function likesArrived() {
  const grown = Math.max(0, room.likes - likes.seen);
  likes.seen = room.likes;
  const mine = Math.min(likes.unconfirmed, grown);
  likes.unconfirmed -= mine;
  const others = grown - mine;
  for (let index = 0; index < Math.min(others, 8); index++) heart(index * 120);
  renderLikes();
}

// --- toasts ---------------------------------------------------------------------------------------------

/** "Someone just bought …", never for the buyer's own order: "N others also bought …" when others bought with them. */
function saleToast(event) {
  const sale = room.sales.get(event.sale_id);
  if (sale?.shelf) return;
  const share = mine.ownShare(event); // null: one of their payments is on its way; told again once answered
  if (!share || share.others <= 0) return;
  const title = sale ? sale.product.title : t("toast.thisDeal");
  const { mine: own, others } = share;
  const said = own ? "toast.othersAlso" : others > 1 ? "toast.peopleJust" : "toast.someoneJust";
  toast(toasts, t(said, { count: others, title }), { kind: "buy" });
}


// --- signing in: the header's account button and the sign-in dialog ----------------------------------------

const dialog = $("#signin");
const signin = { destination: null, then: null }; // where the code went; what to do once signed in
const SIGN_IN_REASON = t("signin.reason");

function renderAccount() {
  const user = session.user;
  const member = Boolean(user && !user.guest);
  const button = $("#account");
  button.dataset.signedIn = String(member);
  text($("#account-name"), member ? user.name : t("account.signIn"));
  text($("#account-initial"), member ? user.name.trim().charAt(0).toUpperCase() : "");
  button.setAttribute("aria-label", member ? t("account.signedInAs", { name: user.name }) : t("account.signIn"));
  if (room.id) renderCard();
}

let account = session.user;
session.onChange((user) => {
  const wasMember = Boolean(account && !account.guest);
  account = user;
  mine.load(); // another person's orders
  shelves.personChanged(); // and their waitlist
  renderAccount();
  if (wasMember && !user && !state.switching) toast(toasts, t("toast.signedOutBy"), { kind: "error" });
});

$("#account").addEventListener("click", () => {
  const user = session.user;
  if (user && !user.guest) {
    text($("#signin-who"), user.name);
    showSignInStep("account");
    dialog.showModal();
  } else {
    openSignIn();
  }
});

/** Open the dialog at its first step; `then` runs once the shopper has signed in. */
function openSignIn({ reason = SIGN_IN_REASON, then = null } = {}) {
  text($("#signin-reason"), reason);
  showSignInStep("destination");
  if (!dialog.open) dialog.showModal();
  signin.then = then;
  $("#signin-destination").focus();
}

function showSignInStep(step) {
  dialog.dataset.step = step;
  $("#signin-error").hidden = true;
}

dialog.addEventListener("close", () => {
  signin.then = null;
});
dialog.addEventListener("click", (click) => {
  if (click.target === dialog) dialog.close(); // a tap on the backdrop
});
$("#signin-close").addEventListener("click", () => dialog.close());

$("#signin-send").addEventListener("submit", (submit) => {
  submit.preventDefault();
  submitting(submit.currentTarget, async () => {
    signin.destination = await sendCode(session);
    showSignInStep("code");
    $("#signin-code").focus();
  });
});

$("#signin-verify").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  let signedIn = null;
  let then = null;
  state.switching = true; // signing in ends the guest's session, and closes its socket: not news to show
  try {
    await submitting(submit.currentTarget, async () => {
      signedIn = await session.signIn(signin.destination, $("#signin-code").value);
      then = signin.then;
      dialog.close();
    });
    if (!signedIn) return;
    toast(toasts, t("toast.signedIn", { name: signedIn.user.name }), { kind: "ok" });
    await rejoin();
    then?.();
  } catch (error) {
    toast(toasts, error.message, { kind: "error" });
  } finally {
    state.switching = false;
  }
});

$("#signin-back").addEventListener("click", () => {
  showSignInStep("destination");
  $("#signin-destination").focus();
});

$("#sign-out").addEventListener("click", async () => {
  dialog.close();
  state.switching = true; // signing out on purpose: no "you were signed out" notice
  try {
    await session.signOut();
    await rejoin(); // as a new guest
    toast(toasts, t("toast.signedOut"));
  } catch (error) {
    toast(toasts, error.message, { kind: "error" });
  } finally {
    state.switching = false;
  }
});

start();
