// The studio's live orders feed: this show's orders (buyer, product, held or paid, amount, time), read from
// GET /api/merchants/{m}/rooms/{r}/orders every 2 s while the page is shown (one read at a time), newest first.

import { api } from "./api.js";
import { $, h, money, text } from "./ui.js";

export const ORDERS_POLL_MS = 2000;
const LIMIT = 50;

const STATUS_LABELS = {
  held: "Held",
  paid: "Paid",
  expired: "Expired",
  cancelled: "Cancelled",
  refunded: "Refunded",
};
const KIND_LABELS = { group: "Group buy", auction: "Auction", shelf: "Regular price" };
const TIME = { hour: "numeric", minute: "2-digit", second: "2-digit" };

/**
 * Start the feed in #orders. `changed({count, held, paid})` is called after each read that changed something (the
 * phone console's tab badge). Returns {soon()}: read again now (a sale's toast, a stock change), after any read in
 * flight.
 */
export function startOrders({ session, merchantId, roomId, changed = () => {} }) {
  const path = `/api/merchants/${encodeURIComponent(merchantId)}/rooms/${encodeURIComponent(roomId)}/orders?limit=${LIMIT}`;
  const rows = new Map(); // order id -> {item, status, amount, time}
  let showId; // the show the rows belong to (undefined before the first read)
  let painted = false; // the first read's rows are not news
  let timer = null;
  let reading = false;
  let again = false;

  const list = $("#orders-feed");
  const empty = $("#orders-empty");

  async function read() {
    clearTimeout(timer);
    timer = null;
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      render(await api(path, { session }));
      $("#orders-error").hidden = true;
    } catch (error) {
      $("#orders-error").hidden = false;
      text($("#orders-error"), `The orders couldn't be read: ${error.message}`);
    } finally {
      reading = false;
      if (again) {
        again = false;
        read();
      } else {
        schedule();
      }
    }
  }

  /** The next read in ORDERS_POLL_MS, unless the page is hidden (it reads again when shown). */
  function schedule() {
    if (timer || reading || document.hidden) return;
    timer = setTimeout(read, ORDERS_POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else {
      read();
    }
  });

  function render(answer) {
    const show = answer.show_id ?? null;
    if (show !== showId) {
      showId = show;
      rows.clear();
      list.replaceChildren();
    }
    const orders = answer.orders || [];
    let moved = false;
    orders.forEach((order, index) => {
      let row = rows.get(order.order_id);
      if (!row) {
        row = orderRow(order);
        rows.set(order.order_id, row);
        moved = true;
        if (painted) flash(row.item);
      }
      updateRow(row, order);
      if (list.children[index] !== row.item) list.insertBefore(row.item, list.children[index] || null);
    });
    const kept = new Set(orders.map((order) => order.order_id));
    for (const [orderId, row] of rows) {
      if (!kept.has(orderId)) {
        row.item.remove();
        rows.delete(orderId);
        moved = true;
      }
    }
    painted = true;
    const held = orders.filter((order) => order.status === "held").length;
    const paid = orders.filter((order) => order.status === "paid").length;
    text(
      $("#orders-note"),
      showId ? "This show's orders, newest first." : "Orders of a show appear here while you're live.",
    );
    empty.hidden = orders.length > 0;
    text(empty, showId ? "No orders yet in this show." : "No show is live.");
    const summary = orders.length ? `${paid} paid · ${held} held` : "";
    if ($("#orders-summary").textContent !== summary || moved) {
      text($("#orders-summary"), summary);
      changed({ count: orders.length, held, paid });
    }
  }

  read();
  return { soon: read };
}

function orderRow(order) {
  const row = {
    status: h("span.order-status"),
    amount: h("strong.order-amount"),
    time: h("time.order-time"),
    product: h("span.order-product"),
  };
  row.item = h(
    "li.order-row",
    { dataset: { orderId: order.order_id, testid: "order" } },
    h(
      "div.order-who",
      {},
      h("strong.order-buyer", {}, order.buyer?.name || "A buyer"),
      row.product,
    ),
    h("div.order-figures", {}, row.amount, row.status, row.time),
  );
  return row;
}

function updateRow(row, order) {
  const { item } = row;
  if (item.dataset.status && item.dataset.status !== order.status) flash(item);
  item.dataset.status = order.status;
  const kind = KIND_LABELS[order.kind];
  text(
    row.product,
    `${order.quantity > 1 ? `${order.quantity} × ` : ""}${order.product?.title || "A product"}${kind ? ` · ${kind}` : ""}`,
  );
  text(row.amount, money(order.amount, order.currency));
  text(row.status, STATUS_LABELS[order.status] || order.status);
  const at = order.status === "paid" && order.paid_at ? order.paid_at : order.created_at;
  row.time.dateTime = new Date(at).toISOString();
  text(row.time, new Date(at).toLocaleTimeString([], TIME));
}

/** Draw the eye to a row that is new or changed. */
function flash(item) {
  item.classList.remove("fresh");
  void item.offsetWidth; // restart the animation
  item.classList.add("fresh");
}
