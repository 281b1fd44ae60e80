// The host studio: sign in (a single-use login link, or a code), camera preview, go live (WHIP), the product bag,
// flash sales with live stock, chat moderation, the show's live numbers and past shows; share and earn through
// studio-referrals.js, group buys through studio-groups.js, the buyers' messages through studio-inbox.js, giveaways
// through studio-giveaways.js and auctions through studio-auctions.js; the live orders feed through studio-orders.js,
// a running sale's start now, restock and extend through studio-sale-controls.js, and the phone's one-screen console
// (tabs, swipe, the pinned product and current sale cards) through studio-console.js.
// The camera itself (its shape and resolution, the phone guide, what is published and why): studio-camera.js.

import { ApiError, Session, api, storage } from "./api.js";
import { appendLine, chatLine, removeLine, roleBadge, scrollToEnd } from "./chat-view.js";
import { CloseCode, Command, Event, PERSONAL_EVENTS, SALE_EVENTS, closeMeaning } from "./protocol.js";
import { RoomSocket, SocketState } from "./room-socket.js";
import { sendCode, submitting } from "./sign-in.js";
import { RoomState, saleStatus } from "./room-state.js";
import { startAuctions } from "./studio-auctions.js";
import { Camera } from "./studio-camera.js";
import { moderatable, moderateByTap } from "./studio-chat-moderation.js";
import { startConsole } from "./studio-console.js";
import { startGiveaways } from "./studio-giveaways.js";
import { startGroups } from "./studio-groups.js";
import { startInbox } from "./studio-inbox.js";
import { startOrders } from "./studio-orders.js";
import { startReferrals } from "./studio-referrals.js";
import { startSaleControls } from "./studio-sale-controls.js";
import { $, clock, compact, h, minorPerUnit, money, safeImage, sentence, text, toast } from "./ui.js";
import { publish } from "./webrtc.js";

const STATS_INTERVAL_MS = 4000;
const REPUBLISH_WINDOW_MS = 15000; // how long Go live retries while the previous stream is still ending
const MAX_CHAT_NODES = 300;
const SALE_LABELS = { scheduled: "Starts soon", live: "Live", sold_out: "Sold out", ended: "Ended" };
const BUYER_LABELS = { anyone: "anyone", signed_in: "signed-in shoppers", verified_phone: "verified phones" };

const roomId = new URLSearchParams(location.search).get("room") || "demo";
const toasts = $("#toasts");

const room = new RoomState({ chatLimit: MAX_CHAT_NODES });
// The staff member's session: sessionStorage, so it ends with the tab (a shared computer in a shop).
const session = new Session(storage("session"), "livecart.studio");
const state = {
  me: null,
  role: null, // the signed-in person's role in this room's shop: admin, host or moderator
  destination: null, // where the sign-in code went
  products: [],
  showId: null, // the room's open show (GET …/stats), null while not live
  showStartedAt: null, // when it went live (ms): sales that ended before it belong to an earlier show
  blocklist: [],
  restricted: new Map(), // user id -> {name, kind: "muted" | "banned", until}
};

let socket = null;
let groups = null; // the group buys' panel and form terms (studio-groups.js)
let inbox = null; // the Messages panel (studio-inbox.js)
let giveaways = null; // the Giveaway panel (studio-giveaways.js)
let auctions = null; // the Auction panel (studio-auctions.js)
let orders = null; // the live orders feed (studio-orders.js)
let saleControls = null; // a running sale's start now, restock, extend (studio-sale-controls.js)
let consoleView = null; // the phone's console: tabs, the pinned product and current sale (studio-console.js)

// --- signing in ----------------------------------------------------------------------------------

const LINK_REFUSED =
  "This login link can't be used: it was used already, has expired, or isn't valid. Ask your shop's admin for a new " +
  "one, or sign in with a code below.";

/** The single-use login ticket in the address's fragment (#login=…), taken out of the address bar and history. */
function takeTicket() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("login") || fragment.has("token")) {
    history.replaceState(null, "", location.pathname + location.search);
  }
  return fragment.get("login");
}

/** Show the sign-in card at a step: "email", "code", "busy" or "refused" (signed in, but not staff here). */
function showSignIn(step, message) {
  $("#studio").hidden = true;
  $("#signin").hidden = false;
  $("#signin-card").dataset.step = step;
  $("#signin-error").hidden = !message;
  text($("#signin-error"), message || "");
  if (step === "email") $("#signin-destination").focus();
  if (step === "code") $("#signin-code").focus();
}

$("#signin-send").addEventListener("submit", (submit) => {
  submit.preventDefault();
  submitting(submit.currentTarget, async () => {
    state.destination = await sendCode(session);
    showSignIn("code");
  });
});

$("#signin-verify").addEventListener("submit", (submit) => {
  submit.preventDefault();
  submitting(submit.currentTarget, async () => {
    await session.signIn(state.destination, $("#signin-code").value);
    signedIn();
  });
});

$("#signin-back").addEventListener("click", () => showSignIn("email"));

$("#signin-other").addEventListener("click", async () => {
  await session.signOut();
  showSignIn("email");
});

$("#sign-out").addEventListener("click", async () => {
  await goOffline({ end: false });
  await session.signOut();
  location.reload();
});

addEventListener("hashchange", () => {
  if (new URLSearchParams(location.hash.slice(1)).has("login")) location.reload(); // a login link pasted in
});

/** Signed in from the card: start the studio (a fresh page when it had started before, as someone else). */
function signedIn() {
  if (socket) location.reload();
  else start();
}

async function start() {
  const ticket = takeTicket();
  if (ticket) {
    showSignIn("busy");
    try {
      await session.redeemLink(ticket);
    } catch (error) {
      showSignIn("email", error.status === 401 || error.status === 400 ? LINK_REFUSED : sentence(error.message));
      return;
    }
  }
  if (!session.user) {
    showSignIn("email");
    return;
  }
  showSignIn("busy");
  try {
    state.me = await api("/api/me", { session });
    room.load({ room: await api(`/api/rooms/${encodeURIComponent(roomId)}`) });
  } catch (error) {
    if (error.status === 401) {
      session.forget();
      showSignIn("email", "Your sign-in has ended. Sign in again.");
    } else if (error.status === 404) {
      showSignIn("refused", `There is no room "${roomId}".`);
    } else {
      showSignIn("email", sentence(error.message));
    }
    return;
  }
  state.role = state.me.roles[room.merchantId] || null;
  if (!state.role) {
    showSignIn("refused", `You're not on the staff of this shop (@${room.merchantId}), signed in as ${state.me.name}.`);
    return;
  }
  $("#signin").hidden = true;
  $("#studio").hidden = false;
  const meta = `${state.me.name} (${state.role}) · @${room.merchantId} · room ${roomId}`;
  text($("#room-title"), room.title);
  text($("#room-meta"), meta);
  $("#room-title").parentElement.title = `${room.title}: ${meta}`; // whole, when a wide header cuts them
  $("#open-room").href = `/room.html?room=${encodeURIComponent(roomId)}`;
  document.title = `${room.title} · Studio · livecart`;

  const merchant = encodeURIComponent(room.merchantId);
  const [products, blocklist] = await Promise.all([
    api(`/api/merchants/${merchant}/products`, { session }).catch(() => []),
    api(`/api/merchants/${merchant}/blocklist`, { session }).catch(() => ({ words: [] })),
  ]);
  state.products = products;
  state.blocklist = blocklist.words;
  renderBlocklist();
  startReferrals({ session, merchantId: room.merchantId, role: state.role, toasts });
  inbox = startInbox({
    session,
    merchantId: room.merchantId,
    roomId,
    me: state.me,
    role: state.role,
    toasts,
    products: () => state.products,
  });
  groups = startGroups({
    session,
    merchantId: room.merchantId,
    role: state.role,
    toasts,
    room,
    now: () => (socket ? socket.serverNow() : Date.now()),
  });
  const moments = {
    session,
    merchantId: room.merchantId,
    roomId,
    role: state.role,
    toasts,
    room,
    now: () => (socket ? socket.serverNow() : Date.now()),
    products: () => state.products,
  };
  giveaways = startGiveaways(moments);
  auctions = startAuctions(moments);
  saleControls = startSaleControls({
    session,
    merchantId: room.merchantId,
    room,
    toasts,
    now: moments.now,
    changed: () => {
      renderSales();
      consoleView.render();
    },
  });
  consoleView = startConsole({
    room,
    now: moments.now,
    saleControls,
    unpin: () => socket.request(Command.PRODUCT_UNPIN).catch(() => {}),
    endSale,
  });
  orders = startOrders({
    session,
    merchantId: room.merchantId,
    roomId,
    changed: (summary) => consoleView.ordersChanged(summary),
  });

  socket = new RoomSocket({
    roomId,
    token: await session.token(),
    onSnapshot: render,
    onEvent: apply,
    onState: connectionChanged,
    refreshToken: (rejected) => session.token({ rejected }),
  });
  window.livecart = { socket, room, state, session };
  socket.open();
  camera.start();
  refreshStats();
  setInterval(refreshStats, STATS_INTERVAL_MS);
  setInterval(tick, 500);
}

function connectionChanged(status, detail) {
  $("#studio").dataset.connection = status;
  if (status === SocketState.OPEN) inbox?.connected(); // the personal events missed while away: read again
  if (status === SocketState.RECONNECTING && detail.attempt === 1) {
    toast(toasts, "Connection to the room lost: reconnecting…", { kind: "error" });
  } else if (status === SocketState.OPEN && socket.reconnects) {
    toast(toasts, "Reconnected", { kind: "ok" });
  } else if (status === SocketState.CLOSED && detail.code === CloseCode.INVALID_TOKEN) {
    goOffline({ end: false });
    showSignIn("email", "Your sign-in has ended. Sign in again.");
  } else if (status === SocketState.CLOSED && detail.code === CloseCode.SIGNED_OUT) {
    session.forget();
    goOffline({ end: false });
    showSignIn("email", "You were signed out. Sign in again to go on.");
  } else if (status === SocketState.CLOSED && detail.code !== CloseCode.NORMAL) {
    toast(toasts, `Disconnected: ${closeMeaning(detail.code)}.`, { kind: "error", ms: 10000 });
  }
  renderLive();
}

// --- the room ------------------------------------------------------------------------------------

function render(snapshot) {
  room.load(snapshot);
  renderChat();
  viewersChanged();
  $("#slow-mode").value = String(room.slowMode);
  renderProducts();
  renderSaleForm();
  renderSales();
  groups.salesChanged();
  giveaways.render();
  auctions.render();
  consoleView.render();
  renderLive();
}

function apply(event) {
  if (Object.hasOwn(PERSONAL_EVENTS, event.type)) {
    inbox?.event(event); // customer service: never the room's state
    return;
  }
  if (!room.apply(event)) return;
  switch (event.type) {
    case Event.ROOM_STATUS:
      renderChat(); // a new show starts with an empty chat (room-state.js)
      renderLive();
      statsSoon(); // going live opens a show, ending closes it
      break;
    case Event.STREAM_STATE:
      renderLive();
      break;
    case Event.PRODUCT_PINNED:
      renderProducts();
      renderSaleForm();
      consoleView.render();
      break;
    case Event.PRODUCT_UNPINNED:
    case Event.BAG_CHANGED:
      renderProducts();
      consoleView.render();
      break;
    case Event.CHAT_MESSAGE:
      addChat(event.message);
      scrollToEnd($("#chat"), false);
      break;
    case Event.CHAT_DELETED:
      removeLine($("#chat"), event.message_id);
      countChat();
      break;
    case Event.CHAT_SLOW_MODE:
      $("#slow-mode").value = String(room.slowMode);
      break;
    case Event.VIEWERS:
      viewersChanged();
      break;
    case Event.LIKES:
      statsSoon(); // the show's likes are the stats' (the room's total runs over every show)
      break;
    case Event.STOCK:
      renderSales();
      consoleView.render();
      groups.saleChanged(event.sale_id);
      statsSoon();
      orders.soon();
      break;
    case Event.GROUPS:
      groups.boardChanged(event.sale_id);
      break;
    case Event.GIVEAWAY:
      giveaways.cardChanged(event.id);
      break;
    case Event.AUCTION:
      auctions.cardChanged(event.id);
      statsSoon(); // a paid win is an order
      break;
    case Event.SALE_TOAST: {
      const sale = room.sales.get(event.sale_id);
      const who = event.orders > 1 ? `${event.orders} orders` : "New order";
      toast(toasts, `${who}: ${event.quantity} × ${sale ? sale.product.title : "flash deal"}`, { kind: "buy" });
      statsSoon();
      orders.soon();
      break;
    }
    default:
      if (SALE_EVENTS.includes(event.type) || event.type === Event.SALE_UPDATED) {
        renderSales();
        consoleView.render();
        groups.salesChanged();
        groups.saleChanged(event.sale.id);
        statsSoon();
      }
  }
}

function tick() {
  if (!room.id) return;
  renderSales();
  consoleView.tick();
  groups.tick();
  giveaways.tick();
  auctions.tick();
  const since = live.since;
  $("#on-air").hidden = !since;
  if (since) text($("#on-air"), clock(Date.now() - since));
}

// --- camera and going live (WHIP) --------------------------------------------------------------------

const live = { stream: null, session: null, intent: false, starting: false, since: 0, confirmEnd: 0 };

// The camera (studio-camera.js): its shape and resolution, the phone guide, and what is really published.
const camera = new Camera({
  changed: () => {
    live.stream = camera.stream;
    renderLive();
  },
});

$("#go-live").addEventListener("click", goLive);

async function goLive() {
  if (!live.stream || live.starting || live.session) return;
  live.intent = true;
  live.starting = true;
  renderLive();
  const deadline = Date.now() + REPUBLISH_WINDOW_MS;
  for (let attempt = 0; live.intent; attempt++) {
    try {
      live.session = await publish(roomId, () => session.token(), live.stream);
      break;
    } catch (error) {
      const busy = error instanceof ApiError && error.code === "already_publishing";
      if ((!busy && !(error.status === 0 || error.status >= 500)) || Date.now() > deadline) {
        live.intent = false;
        live.starting = false;
        toast(toasts, `Couldn't go live: ${error.message}`, { kind: "error", ms: 8000 });
        renderLive();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(3000, 500 * 2 ** attempt)));
    }
  }
  live.starting = false;
  if (!live.session) return;
  watchSession(live.session);
  live.since = live.since || Date.now();
  try {
    await socket.request(Command.ROOM_STATUS, { status: "live" });
  } catch (error) {
    toast(toasts, `The video is up, but the room status wasn't updated: ${error.message}`, { kind: "error" });
  }
  renderLive();
}

/** Republish by itself when the connection to the server fails while the host means to be live. */
function watchSession(session) {
  let lost = null;
  session.pc.addEventListener("connectionstatechange", () => {
    const pcState = session.pc.connectionState;
    if (pcState === "connected") clearTimeout(lost);
    if (pcState === "disconnected") {
      clearTimeout(lost);
      lost = setTimeout(() => republish(session), 5000);
    }
    if (pcState === "failed") republish(session);
    renderLive();
  });
}

async function republish(session) {
  if (live.session !== session || !live.intent) return;
  live.session = null;
  toast(toasts, "Video connection lost: reconnecting…", { kind: "error" });
  await session.stop();
  goLive();
}

$("#end-show").addEventListener("click", async () => {
  if (Date.now() - live.confirmEnd > 4000) {
    live.confirmEnd = Date.now();
    text($("#end-show"), "Click again to end");
    setTimeout(renderLive, 4100);
    return;
  }
  live.confirmEnd = 0;
  await goOffline({ end: true });
});

async function goOffline({ end }) {
  live.intent = false;
  const session = live.session;
  live.session = null;
  live.since = 0;
  if (session) await session.stop();
  if (end && socket?.connected) {
    try {
      await socket.request(Command.ROOM_STATUS, { status: "ended" });
    } catch (error) {
      toast(toasts, `The room status wasn't updated: ${error.message}`, { kind: "error" });
    }
  }
  renderLive();
}

addEventListener("pagehide", () => live.session?.stop({ keepalive: true }));

function liveState() {
  if (live.starting) return "connecting";
  if (live.session) {
    const pcState = live.session.pc.connectionState;
    if (room.stream === "online" && pcState === "connected") return "live";
    return "connecting";
  }
  if (room.status === "ended") return "ended";
  return "offline";
}

const LIVE_LABELS = { live: "Live", connecting: "Connecting…", ended: "Show ended", offline: "Offline" };

function renderLive() {
  const current = liveState();
  $("#studio").dataset.live = current;
  const pill = $("#status-pill");
  pill.dataset.state = current;
  text(pill, LIVE_LABELS[current]);
  text($("#preview-badge"), current === "live" ? "Live" : "Preview");
  const goLiveButton = $("#go-live");
  const onAir = Boolean(live.session || live.starting);
  camera.onAir(live.session, onAir);
  goLiveButton.hidden = onAir;
  goLiveButton.disabled = !live.stream || !socket?.connected;
  $("#end-show").hidden = !onAir;
  if (Date.now() - live.confirmEnd > 4000) text($("#end-show"), "End show");
  text(
    $("#stream-note"),
    current === "live"
      ? "You're live: viewers see and hear this."
      : current === "connecting"
        ? "Connecting your camera to the show…"
        : "Viewers see this picture when you go live.",
  );
}

// --- the product bag --------------------------------------------------------------------------------

function inBag(productId) {
  return room.bag.some((product) => product.id === productId);
}

async function setBag(ids) {
  try {
    await socket.request(Command.BAG_SET, { product_ids: ids });
  } catch (error) {
    toast(toasts, `The bag wasn't changed: ${error.message}`, { kind: "error" });
    renderProducts();
  }
}

async function present(product) {
  try {
    if (!inBag(product.id)) await socket.request(Command.BAG_SET, { product_ids: [...room.bag.map((p) => p.id), product.id] });
    await socket.request(Command.PRODUCT_PIN, { product_id: product.id });
  } catch (error) {
    toast(toasts, `Couldn't present it: ${error.message}`, { kind: "error" });
  }
}

function renderProducts() {
  const list = $("#products");
  if (!state.products.length) {
    list.replaceChildren(h("li.hint", {}, "This shop has no products yet. Add them with the REST API (see the README)."));
    return;
  }
  list.replaceChildren(
    ...state.products.map((product) => {
      const pinned = room.pinned?.id === product.id;
      const bagged = inBag(product.id);
      const toggle = h("input", {
        type: "checkbox",
        checked: bagged,
        on: {
          change: (change) => {
            const ids = room.bag.map((item) => item.id).filter((id) => id !== product.id);
            if (change.target.checked) ids.push(product.id);
            setBag(ids);
          },
        },
      });
      const action = pinned
        ? h(
            "button.button-secondary.small.present-button",
            { type: "button", on: { click: () => socket.request(Command.PRODUCT_UNPIN).catch(() => {}) } },
            "Stop",
          )
        : h(
            "button.button-primary.small.present-button",
            { type: "button", on: { click: () => present(product) } },
            "Present",
          );
      return h(
        pinned ? "li.product-row.pinned" : "li.product-row",
        { dataset: { productId: product.id } },
        h("img", { src: safeImage(product.image_url), alt: "" }),
        h(
          "div",
          {},
          h("span.title", {}, product.title),
          h(
            "span.meta",
            {},
            money(product.price, product.currency),
            pinned ? h("span.on-screen", {}, "On screen") : null,
          ),
        ),
        h("div.row-actions", {}, h("label.switch", { title: "In the bag" }, toggle, "Bag"), action),
      );
    }),
  );
  text(
    $("#bag-note"),
    room.bag.length
      ? `${room.bag.length} of ${state.products.length} products in the bag: viewers can browse them.`
      : "The bag is empty: add products so viewers can browse them.",
  );
}

$("#bag-all").addEventListener("click", () => setBag(state.products.map((product) => product.id)));

// --- flash sales -------------------------------------------------------------------------------------

function renderSaleForm() {
  const select = $("#sale-product");
  const chosen = select.value || room.pinned?.id;
  select.replaceChildren(
    ...state.products.map((product) =>
      h("option", { value: product.id }, `${product.title} · ${money(product.price, product.currency)}`),
    ),
  );
  if (chosen && state.products.some((product) => product.id === chosen)) select.value = chosen;
  if (room.pinned && select.dataset.touched !== "true") select.value = room.pinned.id;
  suggestPrice();
}

function chosenProduct() {
  return state.products.find((product) => product.id === $("#sale-product").value);
}

function suggestPrice() {
  const product = chosenProduct();
  const price = $("#sale-price");
  if (!product || price.dataset.touched === "true") return;
  const unit = minorPerUnit(product.currency);
  price.step = String(1 / unit);
  price.value = String(Math.max(0, Math.round(product.price * 0.7) / unit).toFixed(Math.log10(unit)));
}

$("#sale-product").addEventListener("change", () => {
  $("#sale-product").dataset.touched = "true";
  $("#sale-price").dataset.touched = "false";
  suggestPrice();
});
$("#sale-price").addEventListener("input", () => {
  $("#sale-price").dataset.touched = "true";
});

$("#sale-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const product = chosenProduct();
  if (!product) return;
  const error = $("#sale-error");
  error.hidden = true;
  const button = $("#sale-start");
  button.disabled = true;
  const quantity = Number($("#sale-quantity").value);
  const body = {
    product_id: product.id,
    price: Math.round(Number($("#sale-price").value) * minorPerUnit(product.currency)),
    quantity,
    per_user_limit: Math.min(Number($("#sale-limit").value), quantity),
    countdown_seconds: Number($("#sale-countdown").value),
    duration_seconds: Number($("#sale-duration").value),
    buyers: $("#sale-buyers").value,
  };
  const group = groups.terms(product);
  if (group) body.group = group;
  try {
    const merchant = encodeURIComponent(room.merchantId);
    const sale = await api(`/api/merchants/${merchant}/rooms/${encodeURIComponent(roomId)}/sales`, {
      method: "POST",
      session,
      body,
    });
    room.putSale(sale);
    renderSales();
    const kind = group ? "Group buy" : "Flash sale";
    toast(toasts, `${kind} set: ${product.title} starts in ${body.countdown_seconds} s`, { kind: "ok" });
    if (group) groups.salesChanged();
    if (room.pinned?.id !== product.id) present(product);
    $("#sale-price").dataset.touched = "false";
    consoleView.render();
    consoleView.saleCreated();
  } catch (problem) {
    text(error, problem.message);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});

async function endSale(sale) {
  try {
    const merchant = encodeURIComponent(room.merchantId);
    const ended = await api(`/api/merchants/${merchant}/sales/${encodeURIComponent(sale.id)}/end`, {
      method: "POST",
      session,
    });
    room.putSale(ended);
    renderSales();
  } catch (error) {
    toast(toasts, `Couldn't end the sale: ${error.message}`, { kind: "error" });
  }
}

const saleNodes = new Map(); // sale id -> the parts of its list item that change

/** A flash sale of this show: group-buy offers have their own panel (studio-groups.js), a product's regular-price
 *  shelf and an auction's win are not flash sales, and a sale that ended before this show went live was an earlier
 *  show's. */
function listedSale(sale) {
  if (!sale || sale.group || sale.shelf || sale.auction_id) return false;
  return !(state.showStartedAt && sale.ends_at < state.showStartedAt);
}

function renderSales() {
  const now = socket ? socket.serverNow() : Date.now();
  const sales = [...room.sales.values()].filter(listedSale).sort((a, b) => b.starts_at - a.starts_at);
  const list = $("#sales");
  for (const [saleId, parts] of saleNodes) {
    if (!listedSale(room.sales.get(saleId))) {
      parts.item.remove();
      saleNodes.delete(saleId);
    }
  }
  sales.forEach((sale, index) => {
    let parts = saleNodes.get(sale.id);
    if (!parts) {
      parts = saleItem(sale);
      saleNodes.set(sale.id, parts);
    }
    if (list.children[index] !== parts.item) list.insertBefore(parts.item, list.children[index] || null);
    updateSaleItem(parts, sale, saleStatus(sale, now), now);
  });
}

function saleItem(sale) {
  const end = h("button.button-link", { type: "button", on: { click: () => endSale(sale) } }, "End now");
  const parts = {
    sold: h("span.sold"),
    held: h("span.held"),
    available: h("span.available"),
    status: h("span.sale-status"),
    availableCount: h("b", { dataset: { testid: "sale-available" } }),
    heldCount: h("b"),
    soldCount: h("b", { dataset: { testid: "sale-sold" } }),
    quantity: h("span", { dataset: { testid: "sale-quantity" } }),
    timer: h("span.timer", { dataset: { testid: "sale-timer" } }),
    end,
    controls: saleControls.controls(sale.id, { extra: [end] }),
  };
  parts.item = h(
    "li.sale-item",
    { dataset: { saleId: sale.id } },
    h(
      "div.sale-top",
      {},
      h("img", { src: safeImage(sale.product.image_url), alt: "" }),
      h(
        "div",
        {},
        h("span.title", {}, sale.product.title),
        h(
          "span.meta",
          {},
          h("strong", {}, money(sale.price, sale.currency)),
          ` · was ${money(sale.product.price, sale.currency)} · limit ${sale.per_user_limit} each`,
          ` · ${BUYER_LABELS[sale.buyers] || sale.buyers}`,
        ),
      ),
      parts.status,
    ),
    h("div.stock-meter", { title: "sold · held · available" }, parts.sold, parts.held, parts.available),
    h(
      "div.sale-numbers",
      {},
      h("span", {}, h("span.key.key-available"), parts.availableCount, " left"),
      h("span", {}, h("span.key.key-held"), parts.heldCount, " held"),
      h("span", {}, h("span.key.key-sold"), parts.soldCount, " sold of ", parts.quantity),
      parts.timer,
    ),
    parts.controls.node,
  );
  return parts;
}

function updateSaleItem(parts, sale, status, now) {
  const share = (count) => `${sale.quantity ? (Math.max(0, count) / sale.quantity) * 100 : 0}%`;
  parts.item.dataset.status = status;
  parts.sold.style.width = share(sale.sold);
  parts.held.style.width = share(sale.held);
  parts.available.style.width = share(sale.available);
  text(parts.status, SALE_LABELS[status]);
  text(parts.availableCount, sale.available);
  text(parts.heldCount, sale.held);
  text(parts.soldCount, sale.sold);
  text(parts.quantity, sale.quantity);
  const timer =
    status === "scheduled"
      ? `Starts in ${clock(sale.starts_at - now)}`
      : status === "live" || status === "sold_out"
        ? `Ends in ${clock(sale.ends_at - now)}`
        : "";
  text(parts.timer, timer);
  parts.timer.hidden = !timer;
  parts.end.hidden = !(status === "live" || status === "scheduled");
  parts.controls.update(status);
}

// --- numbers -----------------------------------------------------------------------------------------

let statsTimer = null;
let statsReading = false;
let statsAgain = false;

/** Read the numbers again shortly (once for a burst of events: viewers, likes, orders). */
function statsSoon() {
  if (!statsTimer) statsTimer = setTimeout(refreshStats, 400);
}

async function refreshStats() {
  clearTimeout(statsTimer);
  statsTimer = null;
  if (!room.id) return;
  if (statsReading) {
    statsAgain = true; // one read at a time: the next starts when this one ends
    return;
  }
  statsReading = true;
  try {
    const merchant = encodeURIComponent(room.merchantId);
    const stats = await api(`/api/merchants/${merchant}/rooms/${encodeURIComponent(roomId)}/stats`, {
      session,
    });
    renderShow(stats);
    renderPastShows(stats.shows);
  } catch {
    // the next poll tries again
  } finally {
    statsReading = false;
    if (statsAgain) {
      statsAgain = false;
      statsSoon();
    }
  }
}

/** The open show's numbers, all the server's (viewers without the shop's staff; zeros while the room is not live:
 *  each show counts from its go-live, likes too). */
function renderShow(stats) {
  const showId = stats.show ? stats.show.show_id : null;
  if (showId !== state.showId) {
    state.showId = showId;
    state.showStartedAt = stats.show ? stats.show.started_at : null;
    renderSales(); // an earlier show's sales leave the list
  }
  const since = stats.show && new Date(stats.show.started_at).toLocaleTimeString([], { timeStyle: "short" });
  text(
    $("#show-note"),
    since
      ? `This show, on air since ${since} (your staff don't count as viewers)`
      : "Not live: this show's numbers start when you go live.",
  );
  setStat("#stat-viewers", compact(stats.viewers));
  setStat("#stat-peak", compact(stats.peak_viewers));
  setStat("#stat-likes", compact(stats.likes ?? 0));
  setStat("#stat-orders", compact(stats.orders));
  setStat("#stat-units", compact(stats.units));
  setStat("#stat-gmv", gmvText(stats.gmv));
  setStat("#stat-conversion", stats.peak_viewers ? percent(stats.conversion) : "—");
  // the header's line: what a seller watches, in view however far the page is scrolled
  const count = (n, one) => `${compact(n)} ${one}${n === 1 ? "" : "s"}`;
  text(
    $("#top-numbers"),
    stats.show
      ? `${count(stats.viewers, "viewer")} · ${count(stats.likes ?? 0, "like")} · ${count(stats.orders, "order")}`
      : "",
  );
}

/** Ended shows, newest first: when, how long, peak, orders, GMV and conversion of each. */
function renderPastShows(shows) {
  $("#shows-empty").hidden = shows.length > 0;
  $("#shows").hidden = shows.length === 0;
  $("#shows-body").replaceChildren(
    ...shows.map((show) =>
      h(
        "tr",
        { dataset: { showId: show.show_id } },
        h("td", {}, new Date(show.started_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })),
        h("td", {}, clock(show.ended_at - show.started_at)),
        h("td.number", {}, compact(show.peak_viewers)),
        h("td.number", {}, compact(show.likes ?? 0)),
        h("td.number", {}, compact(show.orders)),
        h("td.number", {}, gmvText(show.gmv)),
        h("td.number", {}, show.peak_viewers ? percent(show.conversion) : "—"),
      ),
    ),
  );
}

function gmvText(gmv) {
  const amounts = Object.entries(gmv);
  return amounts.length ? amounts.map(([currency, amount]) => money(amount, currency)).join(" + ") : money(0);
}

function percent(share) {
  return `${(share * 100).toFixed(1)}%`;
}

function setStat(selector, value) {
  const node = $(selector);
  if (node.textContent === value) return;
  node.textContent = value;
  const tile = node.closest(".stat");
  tile.classList.remove("bump");
  void tile.offsetWidth; // restart the animation
  tile.classList.add("bump");
}

/** The room's count includes the staff: the number shown is the stats' (viewers only), read again now. */
function viewersChanged() {
  statsSoon();
}

// --- chat and moderation --------------------------------------------------------------------------------

function addChat(message) {
  const actions = h("div.mod-actions", {}, modButton("Delete", () => moderate(Command.CHAT_DELETE, { message_id: message.id })));
  if (!roleBadge(message.role)) {
    actions.append(
      modButton("Mute 5 min", () => restrict(message, "muted", 300)),
      modButton("Ban", () => restrict(message, "banned")),
    );
  }
  const item = chatLine(message);
  moderatable(item, actions, message.name);
  appendLine($("#chat"), item, MAX_CHAT_NODES);
  countChat();
}

/** The chat as the room has it now (a snapshot; a new show's empty chat). */
function renderChat() {
  $("#chat").replaceChildren();
  for (const message of room.chat) addChat(message);
  countChat();
  scrollToEnd($("#chat"), true);
}

moderateByTap($("#chat"));

// On a phone the blocked words and bans open over the chat (studio.css), from the chat's header.
$("#moderation-toggle").addEventListener("click", (click) => {
  const open = click.currentTarget.getAttribute("aria-expanded") !== "true";
  click.currentTarget.setAttribute("aria-expanded", String(open));
  $(".chat-panel").dataset.moderation = open ? "open" : "closed";
});

function modButton(label, handler) {
  return h("button", { type: "button", on: { click: handler } }, label);
}

function countChat() {
  const count = $("#chat").children.length;
  text($("#chat-count"), count ? `${count} message${count === 1 ? "" : "s"} · tap one to moderate` : "No messages yet.");
}

async function moderate(command, fields) {
  try {
    await socket.request(command, fields);
    return true;
  } catch (error) {
    toast(toasts, `Not done: ${error.message}`, { kind: "error" });
    return false;
  }
}

async function restrict(message, kind, seconds) {
  const done =
    kind === "muted"
      ? await moderate(Command.CHAT_MUTE, { user_id: message.user_id, seconds })
      : await moderate(Command.CHAT_BAN, { user_id: message.user_id });
  if (!done) return;
  state.restricted.set(message.user_id, { name: message.name, kind, until: seconds ? Date.now() + seconds * 1000 : 0 });
  toast(toasts, kind === "muted" ? `${message.name} is muted for 5 minutes` : `${message.name} is banned from the chat`);
  renderRestricted();
}

function renderRestricted() {
  const now = Date.now();
  for (const [userId, entry] of state.restricted) if (entry.until && entry.until < now) state.restricted.delete(userId);
  $("#restricted-block").hidden = !state.restricted.size;
  $("#restricted").replaceChildren(
    ...[...state.restricted].map(([userId, entry]) =>
      h(
        "li",
        {},
        h("strong", {}, entry.name),
        h("span", {}, entry.kind === "muted" ? `muted until ${new Date(entry.until).toLocaleTimeString()}` : "banned"),
        h(
          "button.button-link",
          {
            type: "button",
            on: {
              click: async () => {
                if (await moderate(Command.CHAT_UNBAN, { user_id: userId })) {
                  state.restricted.delete(userId);
                  renderRestricted();
                }
              },
            },
          },
          entry.kind === "muted" ? "Unmute" : "Unban",
        ),
      ),
    ),
  );
}

$("#slow-mode").addEventListener("change", async (change) => {
  const seconds = Number(change.target.value);
  if (await moderate(Command.CHAT_SLOW_MODE, { seconds })) {
    toast(toasts, seconds ? `Slow mode on: one message per ${change.target.selectedOptions[0].text} per viewer` : "Slow mode off");
  } else {
    change.target.value = String(room.slowMode);
  }
});

$("#chat-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const input = $("#chat-input");
  const value = input.value.trim();
  if (!value) return;
  input.value = "";
  try {
    await socket.request(Command.CHAT_SEND, { text: value });
  } catch (error) {
    input.value = value;
    toast(toasts, `Not sent: ${error.message}`, { kind: "error" });
  }
});

// --- the block list ---------------------------------------------------------------------------------------

function renderBlocklist() {
  $("#blocklist").replaceChildren(
    ...state.blocklist.map((word) =>
      h(
        "li.chip-word",
        {},
        word,
        h(
          "button",
          {
            type: "button",
            "aria-label": `Unblock ${word}`,
            on: { click: () => saveBlocklist(state.blocklist.filter((item) => item !== word)) },
          },
          "×",
        ),
      ),
    ),
  );
}

async function saveBlocklist(words) {
  try {
    const saved = await api(`/api/merchants/${encodeURIComponent(room.merchantId)}/blocklist`, {
      method: "PUT",
      session,
      body: { words },
    });
    state.blocklist = saved.words;
    renderBlocklist();
    return true;
  } catch (error) {
    toast(toasts, `The block list wasn't saved: ${error.message}`, { kind: "error" });
    return false;
  }
}

$("#blocklist-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const input = $("#blocklist-input");
  const word = input.value.trim().toLowerCase();
  if (!word || state.blocklist.includes(word)) {
    input.value = "";
    return;
  }
  if (await saveBlocklist([...state.blocklist, word])) input.value = "";
});

start();
