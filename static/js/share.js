// Share and earn in the viewer room (docs/referrals.md): the share dialog (the member's link and its QR code), the
// visit of a shared link (?ref=), the sharer's live "My earnings" panel and the room's "Top sharers" board.

import { api, storage } from "./api.js";
import { t } from "./strings/room.js";
import { $, copyText, h, money, sentence, text, toast } from "./ui.js";

const TOP_SHOWN = 5;
const visits = storage("session"); // one visit per link, kept for this tab (a reload doesn't repeat it)

/**
 * The room page's sharing. `room` is the page's RoomState, `session` its Session; `signIn()` opens the page's
 * sign-in dialog. The page calls snapshot() after each snapshot, sharersChanged() and earningsArrived(event) for
 * those events, and ready() once it has a session (a guest's or a member's).
 */
export class Sharing {
  constructor({ room, session, roomId, toasts, signIn }) {
    this.room = room;
    this.session = session;
    this.roomId = roomId;
    this.toasts = toasts;
    this.signIn = signIn;
    this.ref = new URLSearchParams(location.search).get("ref");
    this.links = new Map(); // "room" or a product id -> the link made for it (this person's)
    this.earnings = { asked: 0, events: 0, shown: false };
    this.visiting = false; // the visit is on its way
    this._wire();
    for (const link of document.querySelectorAll("a[href='/earnings.html']")) {
      link.href = `/earnings.html?room=${encodeURIComponent(roomId)}`; // its way back to this show
    }
    session.onChange(() => this._personChanged());
  }

  // --- what the page tells us -------------------------------------------------------------------

  /** The page has a session (a guest's at least): record the shared link's visit, if it was opened with one. */
  ready() {
    this._visit();
  }

  /** A fresh snapshot: the board, and the sharer's numbers read again (events may have been missed meanwhile). */
  snapshot() {
    this.sharersChanged();
    this._showVisit();
    this._loadEarnings();
  }

  /** The room's top sharers changed (the `sharers` event, or a snapshot's). */
  sharersChanged() {
    const top = this.room.sharers.slice(0, TOP_SHOWN);
    const board = $("#sharers");
    board.hidden = top.length === 0;
    if (!top.length) return;
    const lead = top[0];
    text($("#sharers-lead"), t("share.leader", { name: lead.name, buyers: t("share.buyers", { count: lead.buyers }) }));
    $("#sharers-list").replaceChildren(
      ...top.map((sharer) =>
        h(
          "li",
          {},
          h("span.sharer-name", {}, sharer.name),
          h("span.sharer-numbers", {}, numbers(sharer)),
        ),
      ),
    );
  }

  /** This viewer's numbers as a sharer changed (the private `earnings` event). */
  earningsArrived(event) {
    if (!this._member() || (event.merchant_id && this.room.merchantId && event.merchant_id !== this.room.merchantId)) {
      return;
    }
    this.earnings.events += 1;
    this._showEarnings(event, { reveal: true });
  }

  // --- the share dialog ----------------------------------------------------------------------------

  _wire() {
    $("#share").addEventListener("click", () => this._open());
    $("#share-close").addEventListener("click", () => $("#share-dialog").close());
    $("#share-dialog").addEventListener("click", (click) => {
      if (click.target === click.currentTarget) click.currentTarget.close(); // a tap on the backdrop
    });
    for (const choice of document.querySelectorAll("input[name=share-what]")) {
      choice.addEventListener("change", () => this._makeLink());
    }
    $("#share-copy").addEventListener("click", () => this._copy());
    // One panel open at a time over the video (what <details name> does where the browser knows it).
    const panels = [$("#earnings"), $("#sharers")];
    for (const panel of panels) {
      panel.addEventListener("toggle", () => {
        if (panel.open) for (const other of panels) if (other !== panel) other.open = false;
      });
    }
  }

  async _open() {
    if (!this._member()) {
      // A guest shares the show's plain link; earning from it needs an account.
      const copied = await copyText(this._plainLink());
      toast(
        this.toasts,
        copied ? t("share.guestCopied") : this._plainLink(),
        { kind: copied ? "ok" : "info", ms: 5000 },
      );
      return;
    }
    if (!this.room.merchantId) return; // the room hasn't arrived yet
    const product = this._product();
    const choice = $("#share-product-choice");
    choice.hidden = !product;
    text($("#share-product-title"), product ? product.title : "");
    if (!product) $("input[name=share-what][value=room]").checked = true;
    $("#share-dialog").showModal();
    this._makeLink();
  }

  /** The pinned product (the one being presented), or null. */
  _product() {
    return this.room.pinned || null;
  }

  _plainLink() {
    return `${location.origin}/room.html?room=${encodeURIComponent(this.roomId)}`;
  }

  /** Ask for the member's link to the chosen show or product (the server gives the same one again) and show it. */
  async _makeLink() {
    const what = $("input[name=share-what]:checked").value;
    const product = what === "product" ? this._product() : null;
    const key = product ? `product:${product.id}` : "room";
    const dialog = $("#share-dialog");
    dialog.dataset.state = "making";
    $("#share-error").hidden = true;
    text($("#share-status"), t("share.making"));
    let link = this.links.get(key);
    if (!link) {
      $("#share-url").value = ""; // never the other choice's link while this one is made
      $("#share-qr").hidden = true;
    }
    try {
      if (!link) {
        const body = product ? { room_id: this.roomId, product_id: product.id } : { room_id: this.roomId };
        link = await api(`/api/merchants/${encodeURIComponent(this.room.merchantId)}/shares`, {
          method: "POST",
          session: this.session,
          body,
        });
        this.links.set(key, link);
      }
    } catch (error) {
      if (error.code === "sign_in_required") {
        dialog.close();
        this.signIn();
        return;
      }
      if (error.code === "referrals_disabled") {
        this._plain(); // the shop pays nothing for shares: the show's own link is still worth sharing
        return;
      }
      dialog.dataset.state = "error";
      text($("#share-error"), sentence(error.message || t("share.makeFailed")));
      $("#share-error").hidden = false;
      text($("#share-status"), "");
      return;
    }
    if ($("input[name=share-what]:checked").value !== what) return; // the choice changed meanwhile
    $("#share-url").value = new URL(link.url, location.origin).href; // the server's may be a path
    const qr = $("#share-qr");
    qr.src = link.qr_url;
    qr.hidden = false;
    dialog.dataset.state = "ready";
    dialog.dataset.code = link.code;
    text($("#share-status"), t("share.ready"));
    if (!this.earnings.shown) this._loadEarnings({ reveal: true });
  }

  /** The show's plain link, without a QR code or earnings. */
  _plain() {
    $("#share-url").value = this._plainLink();
    $("#share-qr").hidden = true;
    $("#share-dialog").dataset.state = "plain";
    text($("#share-status"), t("share.plain"));
  }

  async _copy() {
    const input = $("#share-url");
    if (!input.value) return;
    if (await copyText(input.value)) {
      text($("#share-status"), t("share.copied"));
      $("#share-dialog").dataset.copied = "true";
    } else {
      input.focus();
      input.select(); // copy it by hand
      text($("#share-status"), t("share.copyByHand"));
    }
  }

  // --- a shared link's visit ------------------------------------------------------------------------

  /** Tell the server this person opened the link: once per link in this tab (a guest who signs in later stays
   * bound: the server counts the guest's binding as the member's). */
  async _visit() {
    if (!this.ref || !this.session.user) return;
    const key = `livecart.visit.${this.ref}`;
    if (visits?.getItem(key) || this.visiting) {
      this._showVisit();
      return;
    }
    this.visiting = true;
    try {
      const answer = await api(`/api/shares/${encodeURIComponent(this.ref)}/visits`, {
        method: "POST",
        session: this.session,
        body: {},
      });
      const sharer = answer.sharer;
      const name = typeof sharer === "string" ? sharer : sharer?.name || "";
      visits?.setItem(key, JSON.stringify({ bound: Boolean(answer.bound), reason: answer.reason, name }));
      this._showVisit();
    } catch {
      // a link that doesn't exist, or the shop is busy: the room works the same without it
    } finally {
      this.visiting = false;
    }
  }

  /** "Shared by <name>" when this person is bound to the link's sharer. */
  _showVisit() {
    const kept = this.ref ? visits?.getItem(`livecart.visit.${this.ref}`) : null;
    let visit = null;
    try {
      visit = kept ? JSON.parse(kept) : null;
    } catch {
      visit = null;
    }
    const line = $("#shared-by");
    line.hidden = !(visit && visit.bound && visit.name);
    text(line, visit?.name ? t("share.sharedBy", { name: visit.name }) : "");
  }

  // --- the sharer's numbers -------------------------------------------------------------------------------

  /** Read the member's numbers with the room's merchant; shown when they share (or `reveal`: they just made a link). */
  async _loadEarnings({ reveal = false } = {}) {
    const merchant = this.room.merchantId;
    if (!this._member() || !merchant) return;
    const asked = ++this.earnings.asked;
    const events = this.earnings.events;
    try {
      const numbers = await api(`/api/merchants/${encodeURIComponent(merchant)}/earnings`, { session: this.session });
      if (asked !== this.earnings.asked || !this._member()) return;
      if (events !== this.earnings.events) {
        if (reveal) this._reveal(); // a live event came meanwhile: it is newer than this answer
        return;
      }
      this._showEarnings(numbers, { reveal: reveal || active(numbers) });
    } catch {
      // not a sharer here, or the shop is busy: the panel waits for a live event
    }
  }

  _showEarnings(numbers, { reveal }) {
    const currency = numbers.currency || "USD";
    text($("#earn-visitors"), count(numbers.visitors));
    text($("#earn-buyers"), count(numbers.buyers));
    text($("#earn-orders"), count(numbers.orders));
    text($("#earn-frozen"), money(numbers.frozen, currency));
    text($("#earn-withdrawable"), money(numbers.withdrawable, currency));
    // Earned so far: what waits, what can be withdrawn and what was (flagged commissions count once approved).
    const earned = ["frozen", "withdrawable", "withdrawn"].reduce((sum, name) => sum + (Number(numbers[name]) || 0), 0);
    text($("#earn-total"), money(earned, currency));
    const panel = $("#earnings");
    panel.dataset.buyers = String(numbers.buyers || 0);
    panel.dataset.earned = String(earned);
    if (this.earnings.shown) bump(panel);
    if (reveal) this._reveal();
  }

  _reveal() {
    this.earnings.shown = true;
    $("#earnings").hidden = false;
  }

  _personChanged() {
    this.links.clear();
    this.earnings = { asked: this.earnings.asked + 1, events: 0, shown: false };
    const panel = $("#earnings");
    panel.hidden = true;
    panel.open = false;
    if ($("#share-dialog").open) $("#share-dialog").close();
  }

  _member() {
    const user = this.session.user;
    return Boolean(user && !user.guest);
  }
}

/** "3 buyers · 4 orders": a sharer's line on the board. */
function numbers(sharer) {
  const buyers = t("share.buyers", { count: sharer.buyers });
  return t("share.numbers", { buyers, orders: t("share.orders", { count: sharer.orders }) });
}

/** True when the numbers show someone who shares: a visit, a buyer or money. */
function active(numbers) {
  return ["visitors", "buyers", "orders", "frozen", "withdrawable", "review", "withdrawn"].some(
    (name) => Number(numbers[name]) !== 0 && numbers[name] !== undefined && numbers[name] !== null,
  );
}

function count(value) {
  return new Intl.NumberFormat().format(Number(value) || 0);
}

/** Flash a panel whose numbers just changed. */
function bump(node) {
  node.classList.remove("bump");
  void node.offsetWidth; // restart the animation
  node.classList.add("bump");
}
