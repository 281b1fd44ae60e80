// The studio on a phone: a console that fits one screen (camera, what's on screen, the running sale's controls, chat)
// with the rest (orders, selling, the bag, messages, more) a tab or a swipe away: the tab bar, the swipe, and the
// console's cards for the pinned product and the current flash sale. On a wider screen every panel shows at once.

import { saleStatus } from "./room-state.js";
import { $, $$, clock, h, money, safeImage, text } from "./ui.js";

export const PHONE = "(max-width: 640px)";
const SWIPE_PX = 60; // a swipe moves at least this far across…
const SWIPE_MS = 700; // …within this long, mostly sideways
const NOT_SWIPED = "input, textarea, select, [contenteditable], .shows-scroll, .ref-scroll, .inbox-tabs, .inbox-filter";
const SALE_LABELS = { scheduled: "Starts soon", live: "Live", sold_out: "Sold out", ended: "Ended" };

/**
 * `room` the studio's RoomState, `now()` the server clock, `saleControls` studio-sale-controls.js, `unpin()` and
 * `endSale(sale)` the studio's. Returns {render(), tick(), saleCreated(), ordersChanged(summary)}.
 */
export function startConsole({ room, now, saleControls, unpin, endSale }) {
  const studio = $("#studio");
  const phone = matchMedia(PHONE);
  const tabs = $$("#console-tabs [role=tab]");
  let ordersSeen = 0;
  let ordersCount = 0;

  // --- tabs -------------------------------------------------------------------------------------------------

  function visibleTabs() {
    return tabs.filter((tab) => !tab.hidden);
  }

  function show(name, { focus = false } = {}) {
    studio.dataset.tab = name;
    for (const tab of tabs) {
      const selected = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      if (selected && focus) tab.focus();
    }
    if (name === "orders") ordersSeen = ordersCount;
    renderOrdersBadge();
    if (phone.matches) {
      for (const scroller of [$(".studio-grid"), $(".studio-below")]) scroller.scrollTop = 0;
    }
  }

  function step(by, options) {
    const shown = visibleTabs();
    const index = shown.findIndex((tab) => tab.dataset.tab === studio.dataset.tab);
    const next = shown[index + by];
    if (next) show(next.dataset.tab, options);
  }

  for (const tab of tabs) tab.addEventListener("click", () => show(tab.dataset.tab));
  $("#console-tabs").addEventListener("keydown", (key) => {
    const moves = { ArrowRight: 1, ArrowLeft: -1 };
    if (key.key in moves) {
      key.preventDefault();
      step(moves[key.key], { focus: true });
    } else if (key.key === "Home" || key.key === "End") {
      key.preventDefault();
      const shown = visibleTabs();
      show((key.key === "Home" ? shown[0] : shown.at(-1)).dataset.tab, { focus: true });
    }
  });

  // The top bar's Messages link opens the Messages tab on a phone.
  $("#messages-link").addEventListener("click", (click) => {
    if (!phone.matches) return;
    click.preventDefault();
    show("messages");
  });

  // A sideways swipe over the console moves to the next or previous tab.
  let touch = null;
  for (const area of [$(".studio-grid"), $(".studio-below")]) {
    area.addEventListener(
      "touchstart",
      (start) => {
        const point = start.touches[0];
        touch =
          phone.matches && start.touches.length === 1 && !start.target.closest(NOT_SWIPED)
            ? { x: point.clientX, y: point.clientY, at: start.timeStamp }
            : null;
      },
      { passive: true },
    );
    area.addEventListener(
      "touchend",
      (end) => {
        if (!touch) return;
        const point = end.changedTouches[0];
        const dx = point.clientX - touch.x;
        const dy = point.clientY - touch.y;
        const quick = end.timeStamp - touch.at < SWIPE_MS;
        touch = null;
        if (quick && Math.abs(dx) >= SWIPE_PX && Math.abs(dx) > 2 * Math.abs(dy)) step(dx < 0 ? 1 : -1);
      },
      { passive: true },
    );
  }

  // The Messages tab carries the inbox's unread count (studio-inbox.js keeps it on the top bar's link).
  const unread = $("#messages-link-unread");
  const tabUnread = $("#tab-messages-unread");
  new MutationObserver(() => {
    tabUnread.hidden = unread.hidden;
    text(tabUnread, unread.textContent);
  }).observe(unread, { attributes: true, childList: true, characterData: true, subtree: true });

  function renderOrdersBadge() {
    const fresh = Math.max(0, ordersCount - ordersSeen);
    const badge = $("#tab-orders-new");
    badge.hidden = fresh === 0 || studio.dataset.tab === "orders";
    text(badge, fresh);
  }

  // --- the pinned product ------------------------------------------------------------------------------------

  const pin = {
    image: h("img", { alt: "" }),
    title: h("strong.console-title"),
    price: h("span.console-meta"),
  };
  const pinCard = h(
    "div.console-card",
    {},
    pin.image,
    h("div.console-text", {}, h("span.console-label", {}, "On screen"), pin.title, pin.price),
    h(
      "div.console-actions",
      {},
      h("button.button-secondary.small", { type: "button", on: { click: () => show("bag") } }, "Change"),
      h("button.button-link", { type: "button", on: { click: unpin } }, "Stop"),
    ),
  );
  const noPin = h(
    "div.console-card.console-empty",
    {},
    h("div.console-text", {}, h("span.console-label", {}, "On screen"), h("strong.console-title", {}, "No product")),
    h("button.button-primary.small", { type: "button", on: { click: () => show("bag") } }, "Present one"),
  );

  function renderPin() {
    const product = room.pinned;
    const box = $("#console-pin");
    box.dataset.pinned = product ? product.id : "";
    if (!product) {
      if (box.firstChild !== noPin) box.replaceChildren(noPin);
      return;
    }
    const src = safeImage(product.image_url);
    if (pin.image.getAttribute("src") !== src) pin.image.src = src;
    text(pin.title, product.title);
    pin.title.title = product.title;
    text(pin.price, money(product.price, product.currency));
    if (box.firstChild !== pinCard) box.replaceChildren(pinCard);
  }

  // --- the current flash sale --------------------------------------------------------------------------------

  const sale = {
    id: null,
    label: h("span.console-label"),
    title: h("strong.console-title"),
    status: h("span.sale-status"),
    timer: h("span.console-timer", { dataset: { testid: "console-timer" } }),
    stock: h("span.console-meta", { dataset: { testid: "console-stock" } }),
    end: h("button.button-link", { type: "button" }, "End now"),
    controls: null,
  };
  sale.end.addEventListener("click", () => {
    const current = room.sales.get(sale.id);
    if (current) endSale(current);
  });
  const saleCard = h(
    "div.console-card.console-sale-card",
    {},
    h("div.console-text", {}, sale.label, sale.title, h("span.console-line", {}, sale.timer, sale.stock)),
    sale.status,
  );
  const noSale = h(
    "div.console-card.console-empty",
    {},
    h("div.console-text", {}, h("span.console-label", {}, "Flash sale"), h("strong.console-title", {}, "None running")),
    h(
      "button.button-primary.small",
      {
        type: "button",
        on: {
          click: () => {
            show("sell");
            $("#sale-price").focus();
          },
        },
      },
      "New sale",
    ),
  );

  /** The sale the host is running: the newest flash sale not yet over (group buys, auctions and shelves aside). */
  function currentSale(at) {
    let found = null;
    for (const candidate of room.sales.values()) {
      if (candidate.group || candidate.shelf || candidate.auction_id) continue;
      if (saleStatus(candidate, at) === "ended") continue;
      if (!found || candidate.starts_at > found.starts_at) found = candidate;
    }
    return found;
  }

  function renderSale() {
    const at = now();
    const current = currentSale(at);
    const box = $("#console-sale");
    if (!current) {
      box.dataset.saleId = "";
      if (box.firstChild !== noSale) box.replaceChildren(noSale);
      return;
    }
    if (sale.id !== current.id) {
      sale.id = current.id;
      sale.controls = saleControls.controls(current.id, { extra: [sale.end] });
      box.replaceChildren(saleCard, sale.controls.node);
    }
    box.dataset.saleId = current.id;
    const status = saleStatus(current, at);
    box.dataset.status = status;
    text(sale.label, `Flash sale · ${money(current.price, current.currency)}`);
    text(sale.title, current.product.title);
    sale.title.title = current.product.title;
    text(sale.status, SALE_LABELS[status]);
    sale.status.dataset.status = status;
    text(
      sale.timer,
      status === "scheduled" ? `Starts in ${clock(current.starts_at - at)}` : `Ends in ${clock(current.ends_at - at)}`,
    );
    text(sale.stock, `${current.available} left · ${current.held} held · ${current.sold} sold of ${current.quantity}`);
    sale.controls.update(status);
  }

  show("live");
  return {
    render() {
      renderPin();
      renderSale();
    },
    tick: renderSale,
    /** A sale was just set up from the Sell tab: back to the console, where its controls are. */
    saleCreated() {
      if (phone.matches && studio.dataset.tab === "sell") show("live");
    },
    ordersChanged({ count }) {
      ordersCount = count;
      if (count < ordersSeen || studio.dataset.tab === "orders") ordersSeen = count;
      renderOrdersBadge();
    },
  };
}
