// The auction card in the viewer room (docs/auctions.md): the product, the current bid and its leader, the bid
// count, a countdown on the server's clock that shows each anti-snipe extension, Bid and Max bid, whether this viewer
// leads or was outbid, and for the winner "You won! Pay by …" with the room's payment sheet; after the close, sold,
// unsold or awaiting payment.

import { api, perPerson, randomKey, retrying, storage } from "./api.js";
import { MomentCard } from "./moment-card.js";
import { t } from "./strings/room.js";
import { $, clock, h, keptImage, minorPerUnit, money, sentence, text, timeOfDay, toast } from "./ui.js";

const EXTENDED_MS = 3000; // how long "+10 s" shows after an extension
const KEPT_WINS = 5;
const REFUSALS = { // their strings
  auction_closed: "auction.refusedClosed",
  barred: "auction.refusedBarred",
  too_low: "auction.refusedLow",
  rate_limited: "auction.refusedFast",
};
const SIGN_IN_CODES = new Set(["sign_in_required", "invalid_token"]);
const keptWins = perPerson(storage("local"), "livecart.auction-wins"); // per person: their latest wins

/**
 * The room page's auction card. `room` is the page's RoomState, `session` its Session, `now()` the server's clock;
 * `signIn({reason, then})` opens the page's sign-in dialog, `openSheet(selector)` and `closeSheets()` its sheets,
 * `payHeld(sale, order, detail)` its payment step for a held order; `dismissed()` says the viewer put the card away
 * (the product card may come back). The page calls snapshot() after each snapshot, cardChanged(id) for `auction`
 * events, outbidArrived(event) and wonArrived(event) for the personal events, and tick() a few times a second.
 */
export class Auctions extends MomentCard {
  constructor({ payHeld, ...hooks }) {
    super(hooks, { kind: "auctions", card: "#auction-card" });
    this.payHeld = payHeld;
    this.mine = new Map(); // auction id -> {leading, bid}: what this viewer's bids and outbid events said
    this.orders = new Map(); // order id -> the winner's award order as last read
    this.extensions = new Map(); // auction id -> [extensions seen, until when "+N s" shows]
    this.bidding = null; // the id of the auction a bid is being sent to
    this.refusal = null; // {auction_id, text}
    this.wins = this._storedWins(); // the viewer's auction.won events, newest first: a reload can still pay
    $("#max-bid-form").addEventListener("submit", (submit) => this._maxBid(submit));
  }

  // --- what the page tells us ---------------------------------------------------------------------------

  snapshot() {
    for (const auction of this.room.auctions.values()) this._seen(auction);
    this.render();
    for (const win of this.wins) this._loadOrder(win.order_id);
  }

  cardChanged(id) {
    const auction = this.room.auctions.get(id);
    if (!auction) return;
    const mine = this.mine.get(id);
    if (mine?.leading && auction.leader !== this.session.user?.name) mine.leading = false; // an outbid event missed
    this._seen(auction);
    const win = this._winOf(id);
    if (win) this._loadOrder(win.order_id); // paid, or the hold ran out
    this.render();
  }

  outbidArrived(event) {
    this.mine.set(event.auction_id, { bid: true, leading: false });
    const next = money(event.next_bid, this.room.auctions.get(event.auction_id)?.currency);
    toast(this.toasts, t("auction.outbidToast", { next }), { kind: "error" });
    this.render();
  }

  wonArrived(event) {
    const { type: _type, ts: _ts, ...win } = event;
    this.wins = [win, ...this.wins.filter((known) => known.auction_id !== win.auction_id)].slice(0, KEPT_WINS);
    this._storeWins();
    const price = money(win.price, win.currency);
    toast(this.toasts, t("auction.wonToast", { price }), { kind: "ok", ms: 8000 });
    this._loadOrder(win.order_id);
    this.render();
  }

  // --- the card ------------------------------------------------------------------------------------------

  _left(ms) {
    return clock(ms);
  }

  /** What the card depends on besides events: the clock running out, an extension's "+N s" going away. */
  _signature() {
    const auction = this._shown();
    if (!auction) return "";
    return `${auction.id} ${this.now() >= auction.ends_at} ${Date.now() < (this.extensions.get(auction.id)?.[1] ?? 0)}`;
  }

  /** Remember how many extensions an auction had; one more than before shows "+N s" for a moment. */
  _seen(auction) {
    const known = this.extensions.get(auction.id);
    const count = auction.extensions || 0;
    if (known && count > known[0]) this.extensions.set(auction.id, [count, Date.now() + EXTENDED_MS]);
    else if (!known) this.extensions.set(auction.id, [count, 0]);
  }

  render() {
    const auction = this._showing();
    if (!auction) return;
    const card = this.card;
    const state = auction.state === "open" && this.now() >= auction.ends_at ? "closing" : auction.state;
    card.hidden = false;
    card.dataset.auctionId = auction.id;
    card.dataset.state = state;
    card.dataset.mode = auction.mode;
    card.dataset.extensions = String(auction.extensions || 0);
    const refusal = this.refusal?.auction_id === auction.id ? this.refusal.text : null;
    const parts = [
      h(
        "div.moment-head",
        {},
        keptImage(this.images, auction.product?.image_url, "img.moment-image"),
        h(
          "div.moment-body",
          {},
          this._tags(auction, state),
          h("h2.moment-title", {}, auction.product?.title ?? "Auction"),
          this._price(auction, state),
        ),
        state === "open" ? this._bidButton(auction) : this._dismissButton(auction),
      ),
      state === "open" ? this._standing(auction) : this._outcome(auction, state),
      refusal ? h("p.moment-alert", { role: "alert", dataset: { testid: "auction-refusal" } }, refusal) : null,
    ];
    card.replaceChildren(...parts.filter(Boolean));
  }

  _tags(auction, state) {
    const extended = Date.now() < (this.extensions.get(auction.id)?.[1] ?? 0);
    let timer;
    if (state === "open") {
      const dataset = { until: String(auction.ends_at), testid: "auction-timer" };
      timer = h("span.moment-timer", { dataset }, this._left(auction.ends_at - this.now()));
    } else {
      timer = h("span.moment-timer", {}, state === "closing" ? t("auction.closing") : t("auction.closed"));
    }
    return h(
      "div.moment-tags",
      {},
      h("span.tag.tag-auction", {}, t("auction.tag")),
      auction.mode === "sudden_death"
        ? h("span.tag.tag-sudden", { title: t("auction.suddenTitle") }, t("auction.sudden"))
        : null,
      timer,
      extended && state === "open"
        ? h("span.moment-extended", { dataset: { testid: "auction-extended" } }, t("auction.extended", { seconds: auction.extend_seconds }))
        : null,
    );
  }

  _price(auction, state) {
    const bids = t("auction.bids", { count: auction.bids || 0 });
    if (auction.price == null) {
      const starting = money(auction.starting_bid, auction.currency);
      return h("span.moment-note", {}, h("strong.moment-price", {}, starting), t("auction.starting", { bids }));
    }
    const leader = state === "open" ? auction.leader : (auction.winner ?? auction.leader);
    return h(
      "span.moment-note",
      {},
      h("strong.moment-price", { dataset: { testid: "auction-price" } }, money(auction.price, auction.currency)),
      " ",
      h("span", { dataset: { testid: "auction-leader" } }, leader ?? ""),
      ` · ${bids}`,
    );
  }

  /** While open, the head's button: Bid the next minimum (not while this viewer leads: Max bid raises theirs). */
  _bidButton(auction) {
    const busy = this.bidding === auction.id;
    const leading = Boolean(this.mine.get(auction.id)?.leading);
    return h(
      "button.buy-button.moment-action",
      {
        type: "button",
        disabled: busy || leading,
        dataset: { testid: "auction-bid" },
        on: { click: () => this._bid(auction, {}) },
      },
      busy
        ? t("auction.bidding")
        : leading
          ? t("auction.leading")
          : t("auction.bid", { amount: money(auction.next_bid, auction.currency) }),
    );
  }

  /** While open, under the head: whether this viewer leads or was outbid, and Max bid. */
  _standing(auction) {
    const mine = this.mine.get(auction.id);
    let standing = h("span.moment-fine", {}, t("auction.bidYouBuy"));
    if (mine?.leading) {
      const dataset = { testid: "auction-mine", mine: "leading" };
      standing = h("strong.moment-standing", { dataset }, t("auction.winning"));
    } else if (mine?.bid) {
      const dataset = { testid: "auction-mine", mine: "outbid" };
      const next = money(auction.next_bid, auction.currency);
      standing = h("strong.moment-standing.outbid", { dataset }, t("auction.outbid", { next }));
    }
    return h(
      "div.moment-bids",
      {},
      standing,
      h(
        "button.button-secondary.small",
        {
          type: "button",
          disabled: this.bidding === auction.id,
          dataset: { testid: "auction-max" },
          on: { click: () => this._openMax(auction) },
        },
        t("auction.max"),
      ),
    );
  }

  /** After the close: sold, unsold or awaiting payment; for the winner, their order's state and Pay. */
  _outcome(auction, state) {
    const win = this._winOf(auction.id);
    const order = win ? this.orders.get(win.order_id) : null;
    if (win && (!order || order.status === "held" || order.status === "paid")) {
      const paid = order?.status === "paid";
      const price = money(win.price, win.currency);
      const line = paid ? t("auction.wonPaid") : t("auction.wonPay", { price, time: timeOfDay(win.pay_by) });
      return h(
        "div.moment-outcome.won",
        { dataset: { testid: "auction-mine", mine: paid ? "paid" : "won" } },
        h("strong", {}, line),
        paid
          ? null
          : h(
              "button.button-primary.small",
              { type: "button", dataset: { testid: "auction-pay" }, on: { click: () => this._pay(auction, win) } },
              t("auction.pay"),
            ),
      );
    }
    let line = t("auction.awarding");
    if (state === "closing") line = t("auction.closing");
    else if (state === "sold") line = t("auction.soldTo", { name: auction.winner });
    else if (state === "unsold") line = auction.price == null ? t("auction.unsoldNoBids") : t("auction.unsold");
    else if (state === "awarded") line = t("auction.awaiting", { name: auction.winner });
    if (win && order) line = t("auction.lapsed", { line });
    return h("p.moment-outcome", { dataset: { testid: "auction-result", state } }, line);
  }

  // --- bidding -------------------------------------------------------------------------------------------

  /** Bid the next minimum (`max`: up to that, the server bidding for the viewer). One key per intended bid, the
   *  same on its retries: a bid whose answer was lost is not made twice. */
  async _bid(auction, { max = null }) {
    if (this.bidding) return;
    const user = this.session.user;
    if (!user || user.guest) {
      this._signIn(auction, max);
      return;
    }
    const key = randomKey("bid_");
    this.bidding = auction.id;
    this.refusal = null;
    this.render();
    const body = { amount: auction.next_bid };
    if (max !== null) body.max = Math.max(max, auction.next_bid);
    try {
      const answer = await retrying(() =>
        api(`/api/auctions/${encodeURIComponent(auction.id)}/bids`, {
          method: "POST",
          session: this.session,
          body,
          headers: { "Idempotency-Key": key },
        }),
      );
      const leading = answer.outcome === "leading" || answer.outcome === "raised";
      this.mine.set(auction.id, { bid: true, leading });
      if (answer.auction) this.room.apply({ type: "auction", ...answer.auction });
      if (answer.outcome === "outbid") {
        toast(this.toasts, t("auction.outbidByMax"), { kind: "error" });
      }
      if (answer.outcome === "raised") toast(this.toasts, t("auction.raised"), { kind: "ok" });
    } catch (error) {
      if (SIGN_IN_CODES.has(error.code)) {
        this._signIn(auction, max);
      } else {
        this.refusal = { auction_id: auction.id, text: this._refused(auction, error) };
      }
    } finally {
      this.bidding = null;
    }
    if (this.room.auctions.has(auction.id)) this.cardChanged(auction.id);
  }

  /** Why a bid was refused, in the viewer's words. */
  _refused(auction, error) {
    if (error.code === "too_low" && this.mine.get(auction.id)?.leading) {
      return t("auction.raiseAbove");
    }
    return REFUSALS[error.code] ? t(REFUSALS[error.code]) : sentence(error.message);
  }

  /** Sign in, then make the same bid at the auction's next amount then. */
  _signIn(auction, max) {
    const then = () => this._bid(this.room.auctions.get(auction.id) || auction, { max });
    this.signIn({ reason: t("auction.signIn"), then });
  }

  _openMax(auction) {
    const form = $("#max-bid-form");
    form.dataset.auctionId = auction.id;
    const unit = minorPerUnit(auction.currency);
    const input = $("#max-bid-amount");
    input.step = String(1 / unit);
    input.min = String(auction.next_bid / unit);
    if (!input.value || Number(input.value) * unit < auction.next_bid) input.value = String(auction.next_bid / unit);
    const next = money(auction.next_bid, auction.currency);
    text($("#max-bid-next"), t("auction.next", { next }));
    $("#max-bid-error").hidden = true;
    this.openSheet("#max-bid-sheet");
    input.focus();
  }

  async _maxBid(submit) {
    submit.preventDefault();
    const auction = this.room.auctions.get(submit.currentTarget.dataset.auctionId);
    if (!auction) return;
    const max = Math.round(Number($("#max-bid-amount").value) * minorPerUnit(auction.currency));
    if (!(max >= auction.next_bid)) {
      text($("#max-bid-error"), t("auction.atLeast", { amount: money(auction.next_bid, auction.currency) }));
      $("#max-bid-error").hidden = false;
      return;
    }
    this.closeSheets();
    await this._bid(auction, { max });
  }

  // --- the winner's payment ------------------------------------------------------------------------------

  /** Open the room's payment step for the award order. */
  async _pay(auction, win) {
    try {
      const order = await api(`/api/orders/${encodeURIComponent(win.order_id)}`, { session: this.session });
      this.orders.set(order.order_id, order);
      const sale = { id: order.sale_id, product: auction.product, currency: order.currency };
      this.payHeld(sale, order, t("auction.winDetail", { amount: money(order.amount, order.currency) }));
    } catch (error) {
      toast(this.toasts, sentence(error.message), { kind: "error" });
    }
    this.render();
  }

  async _loadOrder(orderId) {
    try {
      this.orders.set(orderId, await api(`/api/orders/${encodeURIComponent(orderId)}`, { session: this.session }));
      this.render();
    } catch {
      // the next event reads it again
    }
  }

  _winOf(auctionId) {
    return this.wins.find((win) => win.auction_id === auctionId) || null;
  }

  /** The person's wins kept in this browser, newest first (none for nobody, or where storage is refused). */
  _storedWins() {
    const person = this.session.user?.id;
    const wins = person ? keptWins.read(person) : null;
    return Array.isArray(wins) ? wins : [];
  }

  /** Keep the person's wins in this browser (storage refused: they show while this page is open). */
  _storeWins() {
    const person = this.session.user?.id;
    if (person) keptWins.write(person, this.wins);
  }

  _personChanged(user) {
    const person = user?.id ?? null;
    if (person === this.person) return;
    this.person = person;
    this.mine.clear();
    this.orders.clear();
    this.wins = this._storedWins();
    this.refusal = null;
    this.render();
  }
}
