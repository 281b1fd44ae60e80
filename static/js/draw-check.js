// "Check this draw" (draw.html): a giveaway's published draw fetched and recomputed in this browser (draw.js), each
// check shown passed or failed, the winners, and a box to find one's own ticket among the entrants.

import { api } from "./api.js";
import { verify } from "./draw.js";
import { $, $$, h, plural, sentence, text, timeOfDay } from "./ui.js";

const CHECKS = {
  commitment: {
    title: "The seed is the one sealed before anyone entered",
    text: "sha256(seed) is the commitment the giveaway's card showed from its start.",
  },
  entrants: {
    title: "The entrants are the ones sealed at the close",
    text: "sha256 of the sorted tickets, one per line, is the entrants' hash published at the close.",
  },
  winners: {
    title: "The winners are the draw's",
    text: 'Sorting the tickets by sha256(seed + ":" + ticket) puts each winner at their rank.',
  },
};
const WINNER_STATES = { won: "won", claimed: "claimed", forfeited: "forfeited: the prize went to the next rank" };

const id = new URLSearchParams(location.search).get("id");
const page = { entrants: [], ranking: [], winners: [] };

async function start() {
  if (!id) return problem("This link names no giveaway.");
  if (!globalThis.crypto?.subtle) return problem("This browser can only check the draw over https.");
  const path = `/api/giveaways/${encodeURIComponent(id)}`;
  text($("#draw-url"), new URL(`${path}/draw`, location.origin).href);
  const card = await api(path).catch(() => null);
  let draw;
  try {
    draw = await api(`${path}/draw`);
  } catch (error) {
    if (error.code === "not_drawn" && card) {
      return problem(`Not drawn yet: entries close at ${timeOfDay(card.ends_at)}.`);
    }
    return problem(sentence(error.message));
  }
  const result = await verify(draw);
  Object.assign(page, { entrants: draw.entrants || [], ranking: result.ranking, winners: draw.winners || [] });
  render(draw, card, result);
  const ticket = new URLSearchParams(location.search).get("ticket");
  if (ticket) {
    $("#draw-ticket").value = ticket;
    find(ticket);
  }
}

function render(draw, card, result) {
  $("#draw").dataset.state = result.ok ? "verified" : "failed";
  const prize = card?.product?.title ? `${card.product.title} · ` : "";
  const counts = `${plural(page.entrants.length, "entrant")} · ${plural(draw.winners_count, "winner")}`;
  text($("#draw-about"), `${prize}${counts}`);
  const verdict = $("#draw-verdict");
  verdict.dataset.ok = String(result.ok);
  text(verdict, result.ok ? "Verified: this draw checks out." : "Not verified: see what differs below.");
  $("#draw-checks").replaceChildren(...result.checks.map(checkItem));
  const winners = [...page.winners].sort((a, b) => a.rank - b.rank);
  $("#draw-winners").replaceChildren(
    ...(winners.length
      ? winners.map((winner) =>
          h(
            "li",
            { dataset: { ticket: winner.ticket, state: winner.state } },
            h("strong", {}, `#${winner.rank} ${winner.name}`),
            h("span.draw-hash", {}, winner.ticket),
            h("span.hint", {}, WINNER_STATES[winner.state] || winner.state),
          ),
        )
      : [h("li.hint", {}, "Nobody entered: no winner.")]),
  );
  text($("#draw-entrants-count"), `Every entrant (${page.entrants.length})`);
  $("#draw-entrants").replaceChildren(
    ...page.entrants.map((ticket) => h("li.draw-hash", { dataset: { ticket } }, ticket)),
  );
}

function checkItem(check) {
  const about = CHECKS[check.name];
  return h(
    "li.draw-check",
    { dataset: { check: check.name, ok: String(check.ok) } },
    h("strong", {}, about.title),
    h("p", {}, about.text),
    h("p", {}, "Published: ", h("span.draw-hash", {}, check.published || "—")),
    h("p", {}, "Recomputed: ", h("span.draw-hash", {}, check.computed || "—")),
  );
}

/** Say where a ticket is: in the list or not, its rank in the draw, whether it won. */
function find(typed) {
  const value = String(typed).trim().toUpperCase();
  const ticket = value.startsWith("T-") ? value : `T-${value}`;
  const found = $("#draw-found");
  for (const item of $$("#draw-entrants li")) item.dataset.mine = String(item.dataset.ticket === ticket);
  const place = page.entrants.indexOf(ticket);
  found.dataset.found = String(place >= 0);
  if (place < 0) {
    text(found, `${ticket} is not in the published list of entrants.`);
    return;
  }
  const rank = page.ranking.indexOf(ticket) + 1;
  const winner = page.winners.find((entry) => entry.ticket === ticket);
  const outcome = winner ? ` It won (${WINNER_STATES[winner.state] || winner.state}).` : "";
  const where = `entrant ${place + 1} of ${page.entrants.length}, rank ${rank} in the draw`;
  text(found, `${ticket} is in the list: ${where}.${outcome}`);
}

function problem(message) {
  $("#draw").dataset.state = "error";
  const verdict = $("#draw-verdict");
  delete verdict.dataset.ok;
  text(verdict, message);
  text($("#draw-about"), "");
}

$("#draw-find").addEventListener("submit", (submit) => {
  submit.preventDefault();
  find($("#draw-ticket").value);
});

start();
