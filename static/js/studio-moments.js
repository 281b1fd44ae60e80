// What the studio's Giveaways and Auctions panels share (studio-giveaways.js, studio-auctions.js): starting one from
// the panel's form, reading one shortly after a burst of its events, a moment's row in the list, and the countdowns.

import { api } from "./api.js";
import { $, $$, h, safeImage, sentence, text } from "./ui.js";

const SOON_MS = 400; // a burst of events reads the moment once

/**
 * Start a `kind` ("giveaway", "auction") with the panel's form: POST `body` to `path`, the room shown the new one,
 * then `started(it)`. Meanwhile #<kind>-start is held; a refusal shows in #<kind>-error.
 */
export async function startMoment(kind, { session, room, path, body, started }) {
  const error = $(`#${kind}-error`);
  const button = $(`#${kind}-start`);
  error.hidden = true;
  button.disabled = true;
  try {
    const moment = await api(path, { method: "POST", session, body });
    room.apply({ type: kind, ...moment });
    started(moment);
  } catch (problem) {
    text(error, sentence(problem.message));
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

/** `later(id)`: `load(id)` shortly, once for a burst of calls; `waiting(id)`: one is coming. */
export function readsSoon(load) {
  const soon = new Map(); // id -> its timer
  return {
    later(id) {
      clearTimeout(soon.get(id));
      soon.set(
        id,
        setTimeout(() => {
          soon.delete(id);
          load(id);
        }, SOON_MS),
      );
    },
    waiting: (id) => soon.has(id),
  };
}

/** A moment in the panel's list: its product's picture and title, `meta` under it, `status` beside, then `rest`. */
export function momentItem(moment, { dataset, meta, status }, ...rest) {
  return h(
    "li.sale-item.moment-item",
    { dataset },
    h(
      "div.sale-top",
      {},
      h("img", { src: safeImage(moment.product?.image_url), alt: "" }),
      h("div", {}, h("span.title", {}, moment.product?.title), h("span.meta", {}, meta)),
      status,
    ),
    ...rest,
  );
}

/** A list of rows (`row(item)` each), or nothing for no items. */
export function rowList(testid, items, row) {
  if (!items.length) return null;
  return h("ul.offer-groups", { dataset: testid ? { testid } : {} }, ...items.map(row));
}

/** The countdowns of `list` only (no rebuild), each showing `label(ms left)`; `render()` when one ran out. */
export function countDown(list, now, label, render) {
  const at = now();
  for (const node of $$(`${list} [data-until]`)) {
    const left = Number(node.dataset.until) - at;
    if (left <= 0) {
      render();
      return;
    }
    text(node, label(left));
  }
}
