// The studio's auctions (docs/auctions.md): the form that starts one (product, starting bid, minutes, mode, the
// anti-snipe extension, what happens to an unpaid win), the room's auctions live with their bids and awards, and
// the bidders who did not pay, with Bar and Unbar.

import { api } from "./api.js";
import { newestCard } from "./room-state.js";
import { countDown, momentItem, readsSoon, rowList, startMoment } from "./studio-moments.js";
import { $, clock, h, minorPerUnit, money, orderNumber, plural, sentence, timeOfDay, toast } from "./ui.js";

const SHOWN = 3; // the room keeps its three newest auctions
const SHOWN_BIDS = 12;
const STATE_LABELS = {
  open: "Open",
  closing: "Closing",
  closed: "Closed",
  awarded: "Awaiting payment",
  sold: "Sold",
  unsold: "Unsold",
};
const UNPAID_LABELS = { next_bidder: "unpaid: next bidder", host: "unpaid: back to you" };

/**
 * Wire the auction form, show the room's auctions and the shop's bidders for `merchantId`. `products()` is the shop's
 * products. The page calls render() after snapshots, cardChanged(id) for `auction` events and tick() for the clocks.
 */
export function startAuctions({ session, merchantId, roomId, role, toasts, room, now, products }) {
  const base = `/api/merchants/${encodeURIComponent(merchantId)}`;
  const mayBar = role === "admin";
  const bids = new Map(); // auction id -> its newest bids
  const awards = new Map(); // auction id -> its awards (the merchant's auction list)
  const soon = readsSoon(load); // a burst of `auction` events reads the bids once

  // --- the form -------------------------------------------------------------------------------------------

  function chosen() {
    return products().find((product) => product.id === $("#auction-product").value);
  }

  /** The products to pick from, once known (the host's pick is kept); a starting bid suggested from the price. */
  function renderForm() {
    const select = $("#auction-product");
    if (select.options.length === products().length) return;
    select.replaceChildren(
      ...products().map((product) =>
        h("option", { value: product.id }, `${product.title} · ${money(product.price, product.currency)}`),
      ),
    );
    if (room.pinned) select.value = room.pinned.id;
    suggest();
  }

  function suggest() {
    const product = chosen();
    if (!product) return;
    const unit = minorPerUnit(product.currency);
    const input = $("#auction-starting");
    input.step = String(1 / unit);
    input.value = String(Math.max(1, Math.round(product.price * 0.5)) / unit);
  }

  function modeChanged() {
    $("#auction-extend").disabled = $("#auction-mode").value !== "anti_snipe";
  }

  $("#auction-product").addEventListener("change", suggest);
  $("#auction-mode").addEventListener("change", modeChanged);
  modeChanged();

  $("#auction-form").addEventListener("submit", (submit) => {
    submit.preventDefault();
    const product = chosen();
    if (!product) return;
    const mode = $("#auction-mode").value;
    const body = {
      product_id: product.id,
      starting_bid: Math.round(Number($("#auction-starting").value) * minorPerUnit(product.currency)),
      duration_seconds: Math.round(Number($("#auction-minutes").value) * 60),
      mode,
      unpaid: $("#auction-unpaid").value,
    };
    if (mode === "anti_snipe") body.extend_seconds = Number($("#auction-extend").value);
    const path = `${base}/rooms/${encodeURIComponent(roomId)}/auctions`;
    const started = (auction) => {
      const from = money(auction.starting_bid, auction.currency);
      toast(toasts, `Auction started: ${product.title} from ${from}`, { kind: "ok" });
      render();
    };
    startMoment("auction", { session, room, path, body, started });
  });

  // --- the room's auctions ------------------------------------------------------------------------------------

  async function load(id) {
    try {
      const [newest, list] = await Promise.all([
        api(`/api/auctions/${encodeURIComponent(id)}/bids`),
        api(`${base}/auctions`, { session }),
      ]);
      bids.set(id, newest);
      for (const auction of list) awards.set(auction.id, auction.awards);
    } catch {
      if (!bids.has(id)) bids.set(id, []); // read again at its next event
    }
    render();
  }

  function cardChanged(id) {
    soon.later(id);
    const auction = room.auctions.get(id);
    if (auction && auction.state !== "open") loadBidders(); // an unpaid win is a strike
    render();
  }

  function render() {
    renderForm();
    const auctions = [...room.auctions.values()].sort((a, b) => b.starts_at - a.starts_at).slice(0, SHOWN);
    for (const auction of auctions) if (!bids.has(auction.id) && !soon.waiting(auction.id)) soon.later(auction.id);
    const running = newestCard(room.auctions)?.state === "open";
    $("#auction-start").disabled = running;
    $("#auction-running").hidden = !running;
    const at = now();
    $("#auction-list").replaceChildren(...auctions.map((auction) => item(auction, at)));
  }

  function item(auction, at) {
    const state = auction.state === "open" && at >= auction.ends_at ? "closing" : auction.state;
    const mode = auction.mode === "anti_snipe" ? `anti-snipe +${auction.extend_seconds} s` : "sudden death";
    const price = auction.price == null ? null : money(auction.price, auction.currency);
    const who = state === "open" || state === "closing" ? auction.leader : (auction.winner ?? auction.leader);
    return momentItem(
      auction,
      {
        dataset: { auctionId: auction.id, state },
        meta: `from ${money(auction.starting_bid, auction.currency)} · ${mode} · ${UNPAID_LABELS[auction.unpaid]}`,
        status: h("span.sale-status", { dataset: { testid: "auction-state" } }, STATE_LABELS[state] || state),
      },
      h(
        "div.sale-numbers",
        {},
        h("span", {}, price ? [h("b", {}, price), ` ${who ?? ""}`] : "No bids yet"),
        h("span", {}, h("b", {}, String(auction.bids || 0)), auction.bids === 1 ? " bid" : " bids"),
        auction.extensions ? h("span", {}, `extended ${auction.extensions}×`) : null,
        state === "open"
          ? h("span.timer", { dataset: { until: String(auction.ends_at) } }, clock(auction.ends_at - at))
          : h("span.timer", {}, `Closed · ${timeOfDay(auction.ends_at)}`),
      ),
      awardsList(auction),
      bidsList(auction),
    );
  }

  function awardsList(auction) {
    const currency = auction.currency;
    return rowList("auction-awards", awards.get(auction.id) || [], (award) =>
      h(
        "li.offer-group",
        { dataset: { state: award.outcome || "offered" } },
        h("span.group-state", {}, award.outcome || "offered"),
        h("span.offer-group-count", {}, `Round ${award.round}: ${award.name}, ${money(award.price, currency)}`),
        h("span.offer-when", {}, award.order_id ? `order ${orderNumber(award.order_id)}` : ""),
      ),
    );
  }

  function bidsList(auction) {
    return rowList("auction-bids", (bids.get(auction.id) || []).slice(0, SHOWN_BIDS), (bid) =>
      h(
        "li.offer-group",
        {},
        h("span.offer-group-count", {}, money(bid.amount, auction.currency)),
        h("span", {}, bid.proxy ? `${bid.name} (max bid)` : bid.name),
        h("span.offer-when", {}, bid.at ? new Date(bid.at).toLocaleTimeString() : ""),
      ),
    );
  }

  // --- bidders who did not pay -------------------------------------------------------------------------------

  async function loadBidders() {
    try {
      renderBidders(await api(`${base}/bidders`, { session }));
    } catch {
      // shown at the next close
    }
  }

  function renderBidders(bidders) {
    $("#bidders-empty").hidden = bidders.length > 0;
    $("#bidders").replaceChildren(
      ...bidders.map((bidder) =>
        h(
          "li.ref-item",
          { dataset: { userId: bidder.user_id, barred: String(Boolean(bidder.barred)) } },
          h(
            "div.ref-item-text",
            {},
            h("strong", {}, bidder.name ?? bidder.user_id),
            h("span", {}, `${plural(bidder.strikes, "unpaid win")}${bidder.barred ? " · barred" : ""}`),
          ),
          mayBar
            ? h(
                "button.button-secondary.small",
                { type: "button", on: { click: (click) => bar(bidder, click.currentTarget) } },
                bidder.barred ? "Unbar" : "Bar",
              )
            : null,
        ),
      ),
    );
  }

  async function bar(bidder, button) {
    button.disabled = true;
    const path = `${base}/bidders/${encodeURIComponent(bidder.user_id)}/bar`;
    try {
      await api(path, { method: bidder.barred ? "DELETE" : "PUT", session });
      const done = bidder.barred ? "may bid again" : "can no longer bid in your auctions";
      toast(toasts, `${bidder.name ?? bidder.user_id} ${done}`);
    } catch (error) {
      toast(toasts, `Not done: ${sentence(error.message)}`, { kind: "error" });
    }
    loadBidders();
  }

  /** Clocks only (no rebuild); the whole list when one ran out. */
  function tick() {
    countDown("#auction-list", now, clock, render);
  }

  loadBidders();
  return { render, cardChanged, tick };
}
