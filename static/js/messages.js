// The buyer's "My orders and messages" page: their orders (every shop, newest first) with "Ask about this order", their
// threads with unread counts, and one thread open with its text box. No room socket: while the page is visible it
// reads the open thread and the list again every few seconds. Signed in with the room's Session; ?merchant= opens
// that shop's thread (the link a notification carries).

import { Session, api, storage } from "./api.js";
import { ServiceThread, lastLine, when } from "./service-thread.js";
import { sendCode, submitting } from "./sign-in.js";
import { $, h, money, orderNumber, sentence, text } from "./ui.js";

const POLL_MS = 5000;
const ORDER_STATES = {
  held: "Waiting for payment",
  paid: "Paid",
  expired: "Expired",
  cancelled: "Cancelled",
  refunded: "Refunded",
};

const page = $("#messages");
const params = new URLSearchParams(location.search);
const roomId = params.get("room");
// The shopper's session, the one the room signs in with (localStorage).
const session = new Session(storage("local"), "livecart.session");

const state = {
  threads: [], // the buyer's threads, newest activity first
  orders: [],
  open: null, // the ServiceThread shown
  openMerchant: null,
  destination: null, // where the sign-in code went
  polling: false,
};

function show(which) {
  page.dataset.state = which;
}

function member() {
  const user = session.user;
  return Boolean(user && !user.guest);
}

// --- loading -------------------------------------------------------------------------------------------

async function load() {
  if (!member()) {
    closeThread();
    show("signed-out");
    return;
  }
  text($("#messages-who"), `Signed in as ${session.user.name}`);
  try {
    await Promise.all([loadThreads(), loadOrders()]);
    $("#messages-error").hidden = true;
    show("ready");
    const wanted = params.get("merchant");
    if (wanted && !state.openMerchant) openThread(wanted);
  } catch (error) {
    if (error.status === 401 || error.code === "sign_in_required") {
      show("signed-out");
      return;
    }
    text($("#messages-error"), sentence(error.message || "We couldn't load your orders and messages"));
    $("#messages-error").hidden = false;
    show("error");
  }
}

async function loadThreads() {
  const answer = await api("/api/me/threads", { session });
  state.threads = answer.threads || [];
  renderThreads();
}

async function loadOrders() {
  const answer = await api("/api/me/orders?limit=50", { session });
  state.orders = answer.orders || [];
  renderOrders();
}

/** Every few seconds while the page is visible: the list, and the open thread. */
async function poll() {
  if (state.polling || document.visibilityState !== "visible" || !member() || page.dataset.state !== "ready") return;
  state.polling = true;
  try {
    await Promise.all([loadThreads().catch(() => {}), state.open ? state.open.load() : null]);
  } finally {
    state.polling = false;
  }
}

// --- the lists -------------------------------------------------------------------------------------------

function renderThreads() {
  $("#threads-empty").hidden = state.threads.length > 0;
  $("#thread-list").replaceChildren(
    ...state.threads.map((thread) => {
      const unread = Number(thread.unread) || 0;
      const current = thread.merchant_id === state.openMerchant;
      return h(
        "li",
        {},
        h(
          "button.thread-row",
          {
            type: "button",
            "aria-current": current ? "true" : null,
            dataset: { merchantId: thread.merchant_id, unread: String(unread), testid: "thread-row" },
            on: { click: () => openThread(thread.merchant_id) },
          },
          h(
            "span.thread-row-top",
            {},
            h("strong.thread-row-name", {}, shopName(thread.merchant_id)),
            h("span.thread-row-when", {}, when(thread.updated_at)),
          ),
          h(
            "span.thread-row-bottom",
            {},
            h("span.thread-row-last", {}, thread.blocked ? "Blocked" : lastLine(thread)),
            unread ? h("span.unread", { "aria-label": `${unread} unread` }, unread) : null,
          ),
        ),
      );
    }),
  );
}

function renderOrders() {
  $("#orders-empty").hidden = state.orders.length > 0;
  $("#order-list").replaceChildren(
    ...[...state.orders]
      .sort((a, b) => (Number(b.created_at) || 0) - (Number(a.created_at) || 0))
      .map((order) =>
        h(
          "li.order-row",
          { dataset: { orderId: order.order_id, status: order.status || "", testid: "order-row" } },
          h(
            "div.order-main",
            {},
            h("strong.order-title", {}, order.product?.title || "Order"),
            h("span.order-meta", {}, orderMeta(order)),
          ),
          h(
            "div.order-side",
            {},
            h("strong.order-amount", {}, money(order.amount, order.currency)),
            h("span.state", { dataset: { state: order.status || "" } }, ORDER_STATES[order.status] || order.status),
          ),
          h(
            "button.button-secondary.small.order-ask",
            {
              type: "button",
              dataset: { testid: "order-ask" },
              on: { click: () => askAbout(order) },
            },
            "Ask about this order",
          ),
        ),
      ),
  );
}

function shopOf(order) {
  return order.merchant_name || `@${order.merchant_id}`;
}

function orderMeta(order) {
  return [shopOf(order), `Order ${orderNumber(order.order_id)}`, when(order.created_at)].join(" · ");
}

/** "Ask about this order": the order's shop's thread, the order attached to the next message. */
function askAbout(order) {
  openThread(order.merchant_id, { order_id: order.order_id, label: orderLabel(order) });
}

function shopName(merchantId) {
  const thread = state.threads.find((entry) => entry.merchant_id === merchantId);
  const order = state.orders.find((entry) => entry.merchant_id === merchantId);
  return thread?.merchant_name || order?.merchant_name || `@${merchantId}`;
}

function orderLabel(order) {
  const title = order.product?.title;
  return `Order ${orderNumber(order.order_id)}${title ? ` · ${title}` : ""}`;
}

/** Words for what a message is about, from the buyer's orders. */
function describe(about) {
  if (about.order_id) {
    const order = state.orders.find((entry) => entry.order_id === about.order_id);
    return order ? orderLabel(order) : null;
  }
  const ordered = state.orders.find((entry) => entry.product?.id === about.product_id);
  return ordered?.product?.title || null;
}

// --- one thread -------------------------------------------------------------------------------------------

/** Show the thread with `merchantId` (a new one when the buyer never wrote to it); `about` attaches an order. */
function openThread(merchantId, about = null) {
  if (state.openMerchant !== merchantId) {
    state.open?.stop();
    state.openMerchant = merchantId;
    state.open = new ServiceThread({
      root: $("#conversation-thread"),
      session,
      merchantId,
      reading: () => document.visibilityState === "visible" && state.openMerchant === merchantId,
      describe,
      onThread: (thread) => threadChanged(merchantId, thread),
      onSignIn: () => {
        closeThread();
        show("signed-out");
      },
      placeholder: "Write to the shop…",
    });
    state.open.load();
  }
  text($("#conversation-heading"), shopName(merchantId));
  $("#conversation").hidden = false;
  page.dataset.view = "thread";
  renderBlock();
  if (about) state.open.about(about);
  state.open.focus();
  const url = new URL(location.href);
  url.searchParams.set("merchant", merchantId);
  history.replaceState(null, "", url);
  renderThreads();
}

function closeThread() {
  state.open?.stop();
  state.open = null;
  state.openMerchant = null;
  $("#conversation").hidden = true;
  $("#conversation-thread").replaceChildren();
  page.dataset.view = "lists";
  const url = new URL(location.href);
  if (url.searchParams.has("merchant")) {
    url.searchParams.delete("merchant");
    history.replaceState(null, "", url);
  }
  renderThreads();
}

/** The open thread changed (read, blocked, a message): its row in the list follows. */
function threadChanged(merchantId, thread) {
  const index = state.threads.findIndex((entry) => entry.merchant_id === merchantId);
  if (index >= 0) state.threads[index] = { ...state.threads[index], ...thread };
  else state.threads.unshift(thread);
  if (thread.merchant_name && merchantId === state.openMerchant) text($("#conversation-heading"), thread.merchant_name);
  renderThreads();
  renderBlock();
}

function renderBlock() {
  const blocked = Boolean(state.open?.blocked);
  text($("#conversation-block"), blocked ? "Unblock" : "Block");
  $("#conversation-block").setAttribute("aria-label", blocked ? "Unblock this shop" : "Block this shop");
}

$("#conversation-back").addEventListener("click", closeThread);
$("#conversation-block").addEventListener("click", async () => {
  if (!state.open) return;
  await state.open.setBlocked(!state.open.blocked);
  renderBlock();
});

// --- signing in ------------------------------------------------------------------------------------------

function signInStep(step) {
  $("#signin").dataset.step = step;
  $("#signin-error").hidden = true;
}

$("#signin-send").addEventListener("submit", (submit) => {
  submit.preventDefault();
  submitting(submit.currentTarget, async () => {
    state.destination = await sendCode(session);
    signInStep("code");
    $("#signin-code").focus();
  });
});

$("#signin-verify").addEventListener("submit", (submit) => {
  submit.preventDefault();
  submitting(submit.currentTarget, async () => {
    await session.signIn(state.destination, $("#signin-code").value);
    signInStep("destination");
    // session.onChange loads the page
  });
});

$("#signin-back").addEventListener("click", () => {
  signInStep("destination");
  $("#signin-destination").focus();
});

// --- start -----------------------------------------------------------------------------------------------

if (roomId) $("#back-to-room").href = `/room.html?room=${encodeURIComponent(roomId)}`;
else text($("#back-to-room"), "Live shows");
if (!roomId) $("#back-to-room").href = "/";
session.onChange(() => {
  closeThread();
  load(); // signed in here, or in or out in another tab
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  state.open?.seen();
  poll();
  if (member() && page.dataset.state === "ready") loadOrders().catch(() => {});
});
setInterval(poll, POLL_MS);
window.livecart = {
  session,
  reload: load,
  get thread() {
    return state.open;
  },
};
load();
