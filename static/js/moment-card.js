// What the viewer room's giveaway and auction cards share (giveaway.js, auction.js): the page's hooks, the newest
// moment of their kind unless the viewer put it away, the card hidden when there is none, its countdowns and Close.

import { newestCard } from "./room-state.js";
import { t } from "./strings/room.js";
import { $, $$, h, text } from "./ui.js";

/**
 * A moment card: `kind` names the room's map of them ("giveaways", "auctions"), `card` the card's element. A subclass
 * gives render(), _signature() (what the card depends on besides events), _personChanged(user) and, for the
 * countdowns' text, _left(ms).
 */
export class MomentCard {
  constructor({ room, session, toasts, now, signIn, openSheet, closeSheets, dismissed }, { kind, card }) {
    this.room = room;
    this.session = session;
    this.toasts = toasts;
    this.now = now;
    this.signIn = signIn;
    this.openSheet = openSheet;
    this.closeSheets = closeSheets;
    this.onDismiss = dismissed;
    this.kind = kind;
    this.card = $(card);
    this.dismissed = new Set();
    this.images = new Map(); // picture URL -> its <img>, kept across renders
    this.signature = "";
    this.person = session.user?.id ?? null;
    session.onChange((user) => this._personChanged(user));
  }

  /** The card shows this product (the page's product card then steps aside). */
  showsProduct(productId) {
    return this._shown()?.product?.id === productId;
  }

  tick() {
    if (this._signature() !== this.signature) {
      this.render();
      return;
    }
    const now = this.now();
    for (const node of $$("[data-until]", this.card)) text(node, this._left(Number(node.dataset.until) - now));
  }

  _shown() {
    const moment = newestCard(this.room[this.kind]);
    return moment && !this.dismissed.has(moment.id) ? moment : null;
  }

  /** The start of render(): the moment to show, its signature noted; none, and the card is hidden and emptied. */
  _showing() {
    const moment = this._shown();
    this.signature = this._signature();
    if (!moment) {
      this.card.hidden = true;
      this.card.replaceChildren();
    }
    return moment;
  }

  /** The × that puts the card away. */
  _dismissButton(moment) {
    const click = () => {
      this.dismissed.add(moment.id);
      this.render();
      this.onDismiss();
    };
    return h("button.moment-dismiss", { type: "button", "aria-label": t("common.close"), on: { click } }, "×");
  }
}
