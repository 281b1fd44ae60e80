// The giveaway card in the viewer room (docs/giveaways.md): the prize and everything a viewer agrees to before
// Enter (winners, conditions, end time, a countdown on the server's clock), their progress per condition, entering
// and their ticket, the entrant count live; after the draw the winners, a winner's claim with a shipping address,
// and "Check this draw".

import { api } from "./api.js";
import { MomentCard } from "./moment-card.js";
import { t } from "./strings/room.js";
import { $, clock, dayAndTime, h, keptImage, sentence, text, timeOfDay, toast } from "./ui.js";

const PROGRESS_MS = 10000; // the viewer's progress is read again this often while the giveaway is open
const SHOWN_WINNERS = 5;
const REFUSALS = {
  keyword_required: (giveaway) => t("giveaway.keywordFirst", { keyword: giveaway.conditions.keyword }),
  banned: () => t("giveaway.banned"),
  giveaway_closed: () => t("giveaway.closed"),
};

/**
 * The room page's giveaway card. `room` is the page's RoomState, `session` its Session, `now()` the server's clock;
 * `signIn({reason, then})` opens the page's sign-in dialog, `openSheet(selector)` and `closeSheets()` its sheets;
 * `dismissed()` says the viewer put the card away (the product card may come back). The page calls snapshot() after
 * each snapshot, cardChanged() for `giveaway` events, wonArrived(event) for the personal `giveaway.won`, chatSent()
 * after the viewer's chat message went out, and tick() a few times a second.
 */
export class Giveaways extends MomentCard {
  constructor(hooks) {
    super(hooks, { kind: "giveaways", card: "#giveaway-card" });
    this.progress = null; // GET /api/giveaways/{g}/me of the shown giveaway: {giveaway_id, entered, ticket, …}
    this.readAt = 0; // when the progress was last asked for (this browser's clock)
    this.reads = 0; // progress reads begun (and entries made): only the latest read's answer is kept
    this.wins = new Map(); // giveaway id -> the personal giveaway.won event
    this.claims = new Map(); // giveaway id -> the claim made from this page
    this.refusal = null; // {giveaway_id, text}: why the last Enter was refused
    this.entering = false;
    $("#claim-form").addEventListener("submit", (submit) => this._claim(submit));
  }

  // --- what the page tells us ---------------------------------------------------------------------------

  snapshot() {
    this.render();
    this._read();
  }

  cardChanged() {
    const giveaway = this._shown();
    const progress = this.progress;
    if (giveaway && (progress?.giveaway_id !== giveaway.id || (giveaway.state === "drawn" && !progress.drawn))) {
      this._read(); // a new giveaway, or the draw: what it means for this viewer
    }
    this.render();
  }

  wonArrived(event) {
    this.wins.set(event.giveaway_id, event);
    toast(this.toasts, t("giveaway.wonToast"), { kind: "ok", ms: 8000 });
    this._read();
    this.render();
  }

  /** The viewer's chat message went out: it may have had the keyword. */
  chatSent() {
    const giveaway = this._shown();
    if (giveaway?.state === "open" && giveaway.conditions?.keyword) this._read();
  }

  tick() {
    const giveaway = this._shown();
    if (giveaway?.state === "open" && Date.now() - this.readAt > PROGRESS_MS) this._read();
    super.tick();
  }

  // --- the card ------------------------------------------------------------------------------------------

  _left(ms) {
    return t("giveaway.left", { clock: clock(ms) });
  }

  /** What the card depends on besides events: whether entries have closed by the clock. */
  _signature() {
    const giveaway = this._shown();
    return giveaway ? `${giveaway.id} ${giveaway.state} ${this.now() >= giveaway.ends_at}` : "";
  }

  render() {
    const giveaway = this._showing();
    if (!giveaway) return;
    const card = this.card;
    const closing = giveaway.state === "open" && this.now() >= giveaway.ends_at;
    const state = giveaway.state === "open" ? (closing ? "drawing" : "open") : giveaway.state;
    card.hidden = false;
    card.dataset.giveawayId = giveaway.id;
    card.dataset.state = state;
    const progress = this._progressOf(giveaway);
    const parts = [
      this._head(giveaway, state, progress),
      ...(state === "open" ? this._terms(giveaway, progress) : []),
      state === "drawn" ? this._result(giveaway, progress) : null,
    ];
    card.replaceChildren(...parts.filter(Boolean));
  }

  _head(giveaway, state, progress) {
    const winners = t("giveaway.winners", { count: giveaway.winners_count });
    const timer =
      state === "open"
        ? h(
            "span.moment-timer",
            { dataset: { until: String(giveaway.ends_at) } },
            this._left(giveaway.ends_at - this.now()),
          )
        : h("span.moment-timer", {}, state === "drawing" ? t("giveaway.drawing") : t("giveaway.drawn"));
    return h(
      "div.moment-head",
      {},
      keptImage(this.images, giveaway.product?.image_url, "img.moment-image"),
      h(
        "div.moment-body",
        {},
        h("div.moment-tags", {}, h("span.tag.tag-giveaway", {}, t("giveaway.tag")), timer),
        h("h2.moment-title", {}, t("giveaway.win", { prize: giveaway.product?.title ?? t("giveaway.aPrize") })),
        h(
          "span.moment-note",
          {},
          `${winners} · `,
          h("span", { dataset: { testid: "giveaway-entrants" } }, t("giveaway.entered", { count: giveaway.entrants ?? 0 })),
          state === "open" ? t("giveaway.ends", { time: timeOfDay(giveaway.ends_at) }) : "",
        ),
      ),
      this._action(giveaway, state, progress),
    );
  }

  _action(giveaway, state, progress) {
    if (state === "drawn") return this._dismissButton(giveaway);
    if (progress?.entered) {
      return h(
        "span.moment-ticket",
        {},
        h("small", {}, t("giveaway.ticket")),
        h("span", { dataset: { testid: "giveaway-ticket" } }, progress.ticket),
      );
    }
    return h(
      "button.buy-button.moment-action",
      {
        type: "button",
        disabled: state !== "open" || this.entering,
        dataset: { testid: "giveaway-enter" },
        on: { click: () => this._enter(giveaway) },
      },
      this.entering ? t("giveaway.entering") : t("giveaway.enter"),
    );
  }

  /** Before the close: the conditions with the viewer's progress, the terms, and why an entry was refused. */
  _terms(giveaway, progress) {
    const conditions = this._conditions(giveaway, progress);
    const claim = hours(giveaway.claim_seconds);
    const refusal = this.refusal?.giveaway_id === giveaway.id ? this.refusal.text : null;
    return [
      conditions.length
        ? h("ul.moment-conditions", { dataset: { testid: "giveaway-conditions" } }, ...conditions)
        : null,
      h(
        "p.moment-fine",
        {},
        t("giveaway.fine", { claim }),
        h("span", { title: giveaway.commitment }, t("giveaway.sealed", { hash: String(giveaway.commitment).slice(0, 10) })),
      ),
      refusal ? h("p.moment-alert", { role: "alert", dataset: { testid: "giveaway-refusal" } }, refusal) : null,
    ];
  }

  _conditions(giveaway, progress) {
    const terms = giveaway.conditions || {};
    const user = this.session.user;
    const items = [];
    if (terms.signed_in) {
      const done = progress ? progress.signed_in : Boolean(user && !user.guest);
      items.push(condition("signed_in", done, done ? t("giveaway.signedIn") : t("account.signIn"), () => this._signIn(giveaway)));
    }
    if (terms.keyword) {
      const done = Boolean(progress?.keyword_said);
      items.push(
        condition("keyword", done, t("giveaway.typeKeyword", { keyword: terms.keyword }), () => {
          const input = $("#chat-input");
          input.value = terms.keyword;
          input.focus();
        }),
      );
    }
    if (terms.watch_seconds > 0) {
      const watched = Math.min(progress?.watched_seconds ?? 0, terms.watch_seconds);
      const label = t("giveaway.watched", { duration: duration(watched, terms.watch_seconds) });
      items.push(condition("watch", watched >= terms.watch_seconds, label));
    }
    if (progress?.banned) items.push(condition("banned", false, t("giveaway.cantChat")));
    return items;
  }

  /** After the draw: the winners, what it means for this viewer (a claim form for a winner), the draw's check. */
  _result(giveaway, progress) {
    const winners = (giveaway.winners || []).slice().sort((a, b) => a.rank - b.rank);
    const ticket = progress?.ticket ?? null;
    const shown = winners.slice(0, SHOWN_WINNERS);
    const mine = winners.find((winner) => winner.ticket === ticket);
    if (mine && !shown.includes(mine)) shown.push(mine);
    const check = new URL("/draw.html", location.origin);
    check.searchParams.set("id", giveaway.id);
    if (ticket) check.searchParams.set("ticket", ticket);
    return h(
      "div.moment-result",
      {},
      winners.length
        ? h(
            "ol.moment-winners",
            { dataset: { testid: "giveaway-winners" } },
            ...shown.map((winner) =>
              h(
                "li",
                { dataset: { ticket: winner.ticket, state: winner.state, mine: String(winner === mine) } },
                h("strong", {}, winner.name),
                ` · ${winner.ticket}`,
                winner.state === "claimed"
                  ? t("giveaway.claimed")
                  : winner.state === "forfeited"
                    ? t("giveaway.forfeited")
                    : "",
              ),
            ),
            winners.length > shown.length ? h("li.moment-more", {}, t("giveaway.more", { count: winners.length - shown.length })) : null,
          )
        : h("p.moment-fine", {}, t("giveaway.nobody")),
      this._mine(giveaway, progress, mine),
      h(
        "a.moment-link",
        { href: check.href, target: "_blank", rel: "noopener", dataset: { testid: "check-draw" } },
        t("giveaway.check"),
      ),
    );
  }

  /** The viewer's own outcome: won (claim by …, the form), claimed, forfeited, or not this time. */
  _mine(giveaway, progress, mine) {
    const won = progress?.won || null;
    const event = this.wins.get(giveaway.id);
    const claim = this.claims.get(giveaway.id);
    if (!mine && !won && !event) {
      if (!progress?.entered) return null;
      return h("p.moment-outcome", { dataset: { testid: "giveaway-mine" } }, t("giveaway.notThisTime"));
    }
    const claimBy = won?.claim_by ?? event?.claim_by ?? null;
    let line;
    let action = null;
    if (claim || won?.claimed || mine?.state === "claimed") {
      line = t("giveaway.wonClaimed");
    } else if (mine?.state === "forfeited" || (claimBy && this.now() >= claimBy)) {
      line = t("giveaway.wonLapsed");
    } else {
      line = claimBy ? t("giveaway.wonBy", { time: dayAndTime(claimBy) }) : t("giveaway.won");
      action = h(
        "button.button-primary.small",
        {
          type: "button",
          dataset: { testid: "giveaway-claim" },
          on: { click: () => this._openClaim(giveaway, claimBy) },
        },
        t("giveaway.claim"),
      );
    }
    return h("div.moment-outcome.won", { dataset: { testid: "giveaway-mine" } }, h("strong", {}, line), action);
  }

  // --- entering ------------------------------------------------------------------------------------------

  async _enter(giveaway) {
    if (this.entering) return;
    this.entering = true;
    this.refusal = null;
    this.render();
    try {
      const entry = await api(`/api/giveaways/${encodeURIComponent(giveaway.id)}/entries`, {
        method: "POST",
        session: this.session,
      });
      this.reads += 1; // a read begun before the entry would show it missing
      this.progress = { ...(this._progressOf(giveaway) || { giveaway_id: giveaway.id }), entered: true, ...entry };
      toast(this.toasts, t("giveaway.inToast", { ticket: entry.ticket }), { kind: "ok" });
    } catch (error) {
      if (error.code === "sign_in_required") this._signIn(giveaway);
      else {
        const refused = REFUSALS[error.code] || (() => sentence(error.message));
        this.refusal = { giveaway_id: giveaway.id, text: refused(giveaway) };
      }
    } finally {
      this.entering = false;
    }
    this.render();
    this._read();
  }

  _signIn(giveaway) {
    this.signIn({ reason: t("giveaway.signIn"), then: () => this._enter(giveaway) });
  }

  /** Read the viewer's progress in the shown giveaway (GET …/me). */
  async _read() {
    const giveaway = this._shown();
    if (!giveaway || !this.session.user) return;
    this.readAt = Date.now();
    const read = ++this.reads;
    try {
      const progress = await api(`/api/giveaways/${encodeURIComponent(giveaway.id)}/me`, { session: this.session });
      if (read !== this.reads) return;
      this.progress = { ...progress, giveaway_id: giveaway.id, drawn: giveaway.state === "drawn" };
      this.render();
    } catch {
      // read again at the next tick or event
    }
  }

  _progressOf(giveaway) {
    return this.progress?.giveaway_id === giveaway.id ? this.progress : null;
  }

  // --- claiming ----------------------------------------------------------------------------------------------

  _openClaim(giveaway, claimBy) {
    const form = $("#claim-form");
    form.dataset.giveawayId = giveaway.id;
    const by = claimBy ? t("giveaway.claimBy", { time: dayAndTime(claimBy) }) : "";
    text($("#claim-note"), t("giveaway.claimNote", { prize: giveaway.product?.title ?? t("giveaway.yourPrize"), by }));
    $("#claim-error").hidden = true;
    if (!$("#claim-name").value && this.session.user) $("#claim-name").value = this.session.user.name;
    this.openSheet("#claim-sheet");
  }

  async _claim(submit) {
    submit.preventDefault();
    const form = submit.currentTarget;
    const id = form.dataset.giveawayId;
    const button = form.querySelector("button[type=submit]");
    const phone = $("#claim-phone").value.trim();
    const body = { name: $("#claim-name").value.trim(), address: $("#claim-address").value.trim() };
    if (phone) body.phone = phone;
    button.disabled = true;
    $("#claim-error").hidden = true;
    try {
      const path = `/api/giveaways/${encodeURIComponent(id)}/claim`;
      const claim = await api(path, { method: "POST", session: this.session, body });
      this.claims.set(id, claim);
      this.closeSheets();
      toast(this.toasts, t("giveaway.claimedToast"), { kind: "ok", ms: 6000 });
      this.render();
    } catch (error) {
      text($("#claim-error"), sentence(error.message));
      $("#claim-error").hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  _personChanged(user) {
    const person = user?.id ?? null;
    if (person === this.person) return;
    this.person = person;
    this.progress = null;
    this.reads += 1;
    this.wins.clear();
    this.claims.clear();
    this.refusal = null;
    this.render();
  }
}

// --- pieces ------------------------------------------------------------------------------------------------

/** One condition with its mark; not met yet and with something to do about it, a button that does it. */
function condition(name, done, label, act = null) {
  const props = { dataset: { condition: name, done: String(done) } };
  const mark = h("span.moment-mark", { "aria-hidden": "true" }, done ? "✓" : "·");
  if (done || !act) return h("li", props, mark, label);
  return h("li", props, h("button.moment-condition", { type: "button", on: { click: act } }, mark, label));
}

/** "Watched 3 of 5 min" (seconds under two minutes: "20 of 30 s"). */
function duration(watched, needed) {
  if (needed < 120) return t("giveaway.watchSeconds", { watched: Math.floor(watched), needed });
  return t("giveaway.watchMinutes", { watched: Math.floor(watched / 60), needed: Math.ceil(needed / 60) });
}

function hours(seconds) {
  const value = Math.round((seconds || 0) / 3600);
  return value >= 48 && value % 24 === 0 ? t("giveaway.days", { count: value / 24 }) : t("giveaway.hours", { count: value });
}
