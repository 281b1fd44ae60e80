// A giveaway's draw recomputed with WebCrypto SHA-256 (docs/giveaways.md, "The draw"): the mirror of
// server/giveaways/draw.py. No DOM, so Node runs it too (tests/giveaways/test_draw_js.py).

const encoder = new TextEncoder();

/** Lowercase hex SHA-256 of a text's UTF-8 bytes. */
export async function sha256(text) {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** What was published at the start: the hash of the seed's 64 hex characters. */
export function commitmentOf(seed) {
  return sha256(seed);
}

/** The hash of the entrant list: its tickets sorted (byte order), joined by "\n". */
export function entrantsHash(tickets) {
  return sha256([...tickets].sort(byBytes).join("\n"));
}

/** Every ticket in draw order: by sha256(seed + ":" + ticket), then by ticket. */
export async function ranking(seed, tickets) {
  const scored = await Promise.all(tickets.map(async (ticket) => [await sha256(`${seed}:${ticket}`), ticket]));
  scored.sort(([scoreA, ticketA], [scoreB, ticketB]) => byBytes(scoreA, scoreB) || byBytes(ticketA, ticketB));
  return scored.map(([, ticket]) => ticket);
}

/**
 * Check a published draw (GET /api/giveaways/{g}/draw): the seed against the commitment, the entrants against their
 * hash, the winners against the ranking (rank 1, 2 … each the ticket at that place; at least as many as were drawn).
 * Resolves with {ok, checks: [{name, ok, published, computed}], ranking}.
 */
export async function verify(draw) {
  const entrants = Array.isArray(draw.entrants) ? draw.entrants : [];
  const seed = String(draw.seed ?? "");
  const order = await ranking(seed, entrants);
  const winners = [...(draw.winners || [])].sort((a, b) => a.rank - b.rank);
  const inPlace = winners.every((winner, index) => winner.rank === index + 1 && winner.ticket === order[index]);
  const drawn = Math.min(Number(draw.winners_count) || 0, entrants.length);
  const checks = [
    { name: "commitment", published: draw.commitment, computed: await commitmentOf(seed) },
    { name: "entrants", published: draw.entrants_hash, computed: await entrantsHash(entrants) },
    {
      name: "winners",
      published: winners.map((winner) => winner.ticket).join(" "),
      computed: order.slice(0, Math.max(winners.length, drawn)).join(" "),
      ok: inPlace && winners.length >= drawn,
    },
  ].map((check) => ({ ...check, ok: check.ok ?? check.published === check.computed }));
  return { ok: checks.every((check) => check.ok), checks, ranking: order };
}

/** Python's order of strings (code points): the tickets and hashes are ASCII, where it is the order of their bytes. */
function byBytes(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}
