// A running flash sale's controls in the studio: "Start now" (a scheduled sale), "Restock" (+units) and "Extend"
// (+minutes), through POST /api/merchants/{m}/sales/{s}/start|restock|extend; the reply (the sale's new terms) is put
// in the room's state at once, and the room hears `sale.updated`.

import { api } from "./api.js";
import { clock, h, plural, text, timeOfDay, toast } from "./ui.js";

const ADJUST = {
  restock: { label: "Units to add", submit: "Add units", min: 1, max: 1000000, step: 1, value: 10 },
  extend: { label: "Minutes to add", submit: "Add time", min: 1, max: 60, step: 1, value: 2 },
};
const RUNNING = new Set(["scheduled", "live", "sold_out"]);

let forms = 0; // ids for the controls' adjust forms

/**
 * `room` is the studio's RoomState, `now()` the server clock, `changed(sale)` redraws what shows the sale. Returns
 * {controls(saleId)}: a node with the sale's buttons and its update(status).
 */
export function startSaleControls({ session, merchantId, room, toasts, now, changed }) {
  const merchant = encodeURIComponent(merchantId);

  async function act(saleId, action, body) {
    const sale = await api(`/api/merchants/${merchant}/sales/${encodeURIComponent(saleId)}/${action}`, {
      method: "POST",
      session,
      body,
    });
    room.putSale(sale);
    changed(sale);
    toast(toasts, done(action, room.sales.get(sale.id) || sale, now()), { kind: "ok", ms: 5000 });
    return sale;
  }

  /** The controls of one sale; `extra` buttons (the studio's "End now") go at the end of their row. */
  function controls(saleId, { extra = [] } = {}) {
    const id = `sale-adjust-${++forms}`;
    const input = h("input.input", { type: "number", required: true, id: `${id}-amount` });
    const label = h("label", { for: `${id}-amount` });
    const submit = h("button.button-primary.small", { type: "submit" });
    const cancel = h("button.sale-adjust-cancel", { type: "button", "aria-label": "Cancel", title: "Cancel" }, "×");
    const form = h("form.sale-adjust", { id, hidden: true, autocomplete: "off" }, label, input, submit, cancel);
    const start = h("button.button-secondary.small", { type: "button", dataset: { action: "start" } }, "Start now");
    const restock = toggle("restock", "Restock");
    const extend = toggle("extend", "Extend");
    const node = h(
      "div.sale-controls",
      { dataset: { testid: "sale-controls" } },
      h("div.sale-control-buttons", {}, start, restock, extend, ...extra),
      form,
    );
    let mode = null;

    function toggle(action, name) {
      return h(
        "button.button-secondary.small",
        { type: "button", dataset: { action }, "aria-expanded": "false", "aria-controls": id },
        name,
      );
    }

    function open(next) {
      mode = mode === next ? null : next;
      for (const button of [restock, extend]) button.setAttribute("aria-expanded", String(button.dataset.action === mode));
      form.hidden = !mode;
      if (!mode) return;
      const terms = ADJUST[mode];
      text(label, terms.label);
      text(submit, terms.submit);
      Object.assign(input, { min: terms.min, max: terms.max, step: terms.step, value: terms.value });
      input.focus();
      input.select();
    }

    function close() {
      const was = mode && (mode === "restock" ? restock : extend);
      mode = null;
      form.hidden = true;
      for (const button of [restock, extend]) button.setAttribute("aria-expanded", "false");
      if (was && node.contains(document.activeElement)) was.focus();
    }

    async function busy(work) {
      const buttons = [start, restock, extend, submit, cancel];
      for (const button of buttons) button.disabled = true;
      try {
        await work();
        return true;
      } catch (error) {
        toast(toasts, `Not done: ${error.message}`, { kind: "error", ms: 6000 });
        return false;
      } finally {
        for (const button of buttons) button.disabled = false;
      }
    }

    start.addEventListener("click", () => busy(() => act(saleId, "start")));
    restock.addEventListener("click", () => open("restock"));
    extend.addEventListener("click", () => open("extend"));
    cancel.addEventListener("click", close);
    form.addEventListener("keydown", (key) => {
      if (key.key === "Escape") close();
    });
    form.addEventListener("submit", async (submitted) => {
      submitted.preventDefault();
      const amount = Number(input.value);
      const body = mode === "restock" ? { units: Math.round(amount) } : { seconds: Math.round(amount * 60) };
      const action = mode;
      if (await busy(() => act(saleId, action, body))) close();
    });

    return {
      node,
      /** Show the buttons that apply to the sale at this status (scheduled, live, sold_out, ended). */
      update(status) {
        node.hidden = !RUNNING.has(status);
        start.hidden = status !== "scheduled";
        if (!RUNNING.has(status) && mode) close();
      },
    };
  }

  return { controls };
}

/** What changed, in the sale's new numbers. */
function done(action, sale, now) {
  const title = sale.product?.title || "The sale";
  if (action === "start") return `${title} is on sale now: ends in ${clock(sale.ends_at - now)}`;
  if (action === "restock") {
    return `Restocked: ${plural(sale.quantity, "unit")} in all, ${new Intl.NumberFormat().format(sale.available)} left`;
  }
  return `Extended: ends at ${timeOfDay(sale.ends_at)}, in ${clock(sale.ends_at - now)}`;
}
