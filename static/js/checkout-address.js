// The checkout's shipping address: asked once (filled in from GET /api/me/address when the account has one), then
// shown as a summary with "Change"; what the payment sends as `shipping` (the server remembers it for the account).

import { api } from "./api.js";
import { $, text } from "./ui.js";

/**
 * The pay form's "Ship to" part. `session` is the page's Session.
 *
 * The page calls prepare() when the payment step shows, shipping() for the payment's body (undefined: the account's
 * saved address is used), and paid(shipping) once a payment with it went through.
 */
export class CheckoutAddress {
  constructor({ session }) {
    this.session = session;
    this.box = $("#ship");
    this.fields = $("#ship-fields");
    this.person = undefined;
    this.saved = undefined; // the account's address {name, address, phone}; null: none; undefined: not read yet
    this.reading = null;
    this.editing = false; // the shopper chose "Change" (or there is nothing saved): the fields are shown
    $("#ship-change").addEventListener("click", () => {
      this.editing = true;
      this._fill(this.saved);
      this._show();
      $("#ship-name").focus();
    });
  }

  /** The payment step opens: the summary when the account's address is known, else the fields. */
  prepare() {
    const person = this.session.user?.id ?? null;
    if (person !== this.person) {
      this.person = person;
      this.saved = undefined;
      this.editing = false;
      this._fill(null);
    }
    this._show();
    if (this.saved === undefined && person) this._read(person);
  }

  /** What the payment sends as `shipping`: the fields when shown, nothing when the saved address is used. */
  shipping() {
    if (!this._asking()) return undefined;
    const shipping = { name: $("#ship-name").value.trim(), address: $("#ship-address").value.trim() };
    const phone = $("#ship-phone").value.trim();
    if (phone) shipping.phone = phone;
    return shipping;
  }

  /** A payment went through with this `shipping` (or the saved address): the account has it now. */
  paid(shipping) {
    if (shipping) this.saved = shipping;
    this.editing = false;
    this._show();
  }

  _asking() {
    return this.editing || !this.saved;
  }

  async _read(person) {
    if (this.reading) return;
    this.reading = api("/api/me/address", { session: this.session })
      .then((answer) => {
        if (this.person !== person) return;
        this.saved = answer?.address || null;
        // what the shopper typed meanwhile stays (and is sent); else the saved address is shown as the summary
        if ($("#ship-name").value || $("#ship-address").value) this.editing = true;
        else this._fill(this.saved);
        this._show();
      })
      .catch(() => {
        // a guest, or no answer: the fields ask
      })
      .finally(() => {
        this.reading = null;
      });
  }

  _fill(address) {
    $("#ship-name").value = address?.name || "";
    $("#ship-address").value = address?.address || "";
    $("#ship-phone").value = address?.phone || "";
  }

  /** The summary or the fields; the fields are disabled (not checked, not sent) while the summary shows. */
  _show() {
    const asking = this._asking();
    this.box.dataset.state = asking ? "ask" : "known";
    this.fields.disabled = !asking;
    if (this.saved) {
      text($("#ship-summary-name"), this.saved.name);
      text($("#ship-summary-address"), [this.saved.address, this.saved.phone].filter(Boolean).join(" · "));
    }
  }
}
