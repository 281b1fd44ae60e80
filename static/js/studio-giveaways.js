// The studio's giveaways (docs/giveaways.md): the form that starts one (prize, winners, minutes, conditions, time
// to claim), and the room's giveaways live: entrants arriving, the result, the winners' claims with their addresses.

import { api } from "./api.js";
import { newestCard } from "./room-state.js";
import { countDown, momentItem, readsSoon, rowList, startMoment } from "./studio-moments.js";
import { $, clock, dayAndTime, h, plural, timeOfDay, toast } from "./ui.js";

const SHOWN = 3; // the room keeps its three newest giveaways
const STATE_LABELS = { open: "Open", drawing: "Drawing", drawn: "Drawn" };
const WINNER_LABELS = { won: "Won", claimed: "Claimed", forfeited: "Forfeited" };

/**
 * Wire the giveaway form and show the room's giveaways for `merchantId`. `products()` is the shop's products. The
 * page calls render() after snapshots, cardChanged(id) for `giveaway` events and tick() for the countdowns.
 */
export function startGiveaways({ session, merchantId, roomId, toasts, room, now, products }) {
  const base = `/api/merchants/${encodeURIComponent(merchantId)}`;
  const details = new Map(); // giveaway id -> GET …/giveaways/{g}: the card with `entrants_list` and `claims`
  const soon = readsSoon(load); // a burst of `giveaway` events reads the giveaway once
  const opened = new Set(); // giveaway ids whose entrant list the host opened (kept open across renders)

  // --- the form -------------------------------------------------------------------------------------------

  /** The prizes to pick from, once the shop's products are known (the host's pick is kept). */
  function renderForm() {
    const select = $("#giveaway-product");
    if (select.options.length === products().length) return;
    select.replaceChildren(...products().map((product) => h("option", { value: product.id }, product.title)));
    if (room.pinned) select.value = room.pinned.id;
  }

  $("#giveaway-form").addEventListener("submit", (submit) => {
    submit.preventDefault();
    const keyword = $("#giveaway-keyword").value.trim();
    const body = {
      product_id: $("#giveaway-product").value,
      winners: Number($("#giveaway-winners").value),
      duration_seconds: Math.round(Number($("#giveaway-minutes").value) * 60),
      conditions: {
        signed_in: $("#giveaway-signed-in").checked,
        keyword: keyword || null,
        watch_seconds: Math.round(Number($("#giveaway-watch").value || 0) * 60),
      },
      claim_seconds: Math.round(Number($("#giveaway-claim-hours").value) * 3600),
    };
    const path = `${base}/rooms/${encodeURIComponent(roomId)}/giveaways`;
    startMoment("giveaway", { session, room, path, body, started });
  });

  function started(giveaway) {
    const left = clock(giveaway.ends_at - now());
    toast(toasts, `Giveaway started: ${giveaway.product.title}, entries close in ${left}`, { kind: "ok" });
    render();
  }

  // --- the room's giveaways --------------------------------------------------------------------------------

  async function load(id) {
    try {
      details.set(id, await api(`${base}/giveaways/${encodeURIComponent(id)}`, { session }));
    } catch {
      if (!details.has(id)) details.set(id, null); // read again at its next event
    }
    render();
  }

  function cardChanged(id) {
    soon.later(id);
    render();
  }

  function shown() {
    return [...room.giveaways.values()].sort((a, b) => b.starts_at - a.starts_at).slice(0, SHOWN);
  }

  function render() {
    renderForm();
    const giveaways = shown();
    for (const giveaway of giveaways) {
      if (!details.has(giveaway.id) && !soon.waiting(giveaway.id)) soon.later(giveaway.id);
    }
    const running = newestCard(room.giveaways)?.state === "open";
    $("#giveaway-start").disabled = running;
    $("#giveaway-running").hidden = !running;
    const at = now();
    $("#giveaway-list").replaceChildren(...giveaways.map((giveaway) => item(giveaway, details.get(giveaway.id), at)));
  }

  function item(giveaway, detail, at) {
    const state = giveaway.state === "open" && at >= giveaway.ends_at ? "drawing" : giveaway.state;
    const terms = giveaway.conditions || {};
    const conditions = [
      terms.signed_in ? "signed-in only" : "guests too",
      terms.keyword ? `keyword “${terms.keyword}”` : null,
      terms.watch_seconds ? `watch ${clock(terms.watch_seconds * 1000)}` : null,
    ].filter(Boolean);
    return momentItem(
      giveaway,
      {
        dataset: { giveawayId: giveaway.id, state },
        meta: `${plural(giveaway.winners_count, "winner")} · ${conditions.join(" · ")}`,
        status: h("span.sale-status", {}, STATE_LABELS[state] || state),
      },
      h(
        "div.sale-numbers",
        {},
        h("span", {}, h("b", { dataset: { testid: "giveaway-entrants" } }, String(giveaway.entrants ?? 0)), " entered"),
        h("span.draw-hash", { title: `Commitment ${giveaway.commitment}` }, `sealed ${short(giveaway.commitment)}`),
        state === "open"
          ? h("span.timer", { dataset: { until: String(giveaway.ends_at) } }, `Ends in ${clock(giveaway.ends_at - at)}`)
          : h("span.timer", {}, state === "drawing" ? "Drawing…" : `Drawn · ${timeOfDay(giveaway.ends_at)}`),
      ),
      state === "drawn" ? winnersList(giveaway, detail) : null,
      entrantsList(giveaway, detail),
    );
  }

  function winnersList(giveaway, detail) {
    const winners = (giveaway.winners || []).slice().sort((a, b) => a.rank - b.rank);
    const claims = new Map((detail?.claims || []).map((claim) => [claim.rank, claim]));
    if (!winners.length) return h("p.offer-empty", {}, "Nobody entered: no winner.");
    const check = `/draw.html?id=${encodeURIComponent(giveaway.id)}`;
    return h(
      "div.moment-winners-block",
      {},
      rowList("giveaway-winners", winners, (winner) => {
        const claim = claims.get(winner.rank);
        return h(
          "li.offer-group",
          { dataset: { ticket: winner.ticket, state: winner.state } },
          h("span.group-state", {}, WINNER_LABELS[winner.state] || winner.state),
          h("span.offer-group-count", {}, `#${winner.rank} ${winner.name} · ${winner.ticket}`),
          claim
            ? h(
                "span.offer-members.moment-claim",
                { dataset: { testid: "giveaway-claim" } },
                [claim.name, claim.address, claim.phone].filter(Boolean).join(" · "),
              )
            : null,
        );
      }),
      h("a.button-link", { href: check, target: "_blank", rel: "noopener" }, "Check this draw"),
    );
  }

  function entrantsList(giveaway, detail) {
    const entrants = detail?.entrants_list || [];
    if (!entrants.length) return null;
    const toggle = (event) => (event.currentTarget.open ? opened.add(giveaway.id) : opened.delete(giveaway.id));
    return h(
      "details.moment-entrants",
      { open: opened.has(giveaway.id), on: { toggle } },
      h("summary", {}, `Entrants (${entrants.length})`),
      rowList(null, entrants, (entrant) =>
        h(
          "li.offer-group",
          {},
          h("span.offer-group-count", {}, entrant.name),
          h("span.draw-hash", {}, entrant.ticket),
          h("span.offer-when", {}, entrant.entered_at ? dayAndTime(entrant.entered_at) : ""),
        ),
      ),
    );
  }

  /** Countdowns only (no rebuild); the whole list when one ran out. */
  function tick() {
    countDown("#giveaway-list", now, (left) => `Ends in ${clock(left)}`, render);
  }

  return { render, cardChanged, tick };
}

/** The start of a hash: enough to compare by eye. */
function short(hash) {
  return `${String(hash || "").slice(0, 10)}…`;
}
