// The studio's group buys (docs/group-buys.md): the sale form's "Group buy" terms (size, window, leader's price),
// and the "Group buys" panel: per offer its groups forming, filled and failed, units reserved and sold, every group
// with its members, and End.

import { api } from "./api.js";
import { saleStatus } from "./room-state.js";
import { $, $$, clock, h, minorPerUnit, money, orderNumber, safeImage, sentence, text, toast } from "./ui.js";

const REFRESH_MS = 10000;
const SOON_MS = 400; // a burst of `groups` events reads the offer once
const SHOWN_OFFERS = 6;
const SHOWN_GROUPS = 30;
const STATUS_LABELS = { scheduled: "Starts soon", live: "Live", sold_out: "Sold out", ended: "Ended" };
const GROUP_LABELS = {
  pending: "Waiting for the leader",
  open: "Forming",
  filled: "Filled",
  failed: "Failed",
  cancelled: "Cancelled",
};

/**
 * Wire the sale form's group terms and show the panel for `merchantId`. The page calls boardChanged(saleId) for
 * `groups` events, salesChanged() after snapshots and sale or stock events, and tick() for the countdowns; terms()
 * gives the form's `group` body (null for a flash sale).
 */
export function startGroups({ session, merchantId, role, toasts, room, now }) {
  const base = `/api/merchants/${encodeURIComponent(merchantId)}`;
  const call = (path, options = {}) => api(base + path, { session, ...options });
  const mayEnd = role === "admin" || role === "host";
  const state = {
    offers: new Map(), // sale id -> the offer as the merchant's sales list has it (with its counts)
    groups: new Map(), // sale id -> its groups, newest first
    nodes: new Map(), // sale id -> its list item
    soon: new Map(), // sale id -> a timer: read its groups shortly
    loading: false,
  };

  // --- the sale form ------------------------------------------------------------------------------------

  const terms = $$(".group-term");
  function groupMode() {
    const on = $("#sale-group").checked;
    for (const field of terms) field.hidden = !on;
    for (const input of $$(".group-term input")) input.disabled = !on; // hidden fields don't block the form
    text($("#sale-start-label"), on ? "Start group buy" : "Start flash sale");
    text($("#sale-price-label"), on ? "Group price" : "Live price");
  }
  $("#sale-group").addEventListener("change", groupMode);
  groupMode();

  /** The form's group terms for a sale of `product`: {size, window_seconds, leader_price?}, or null. */
  function formTerms(product) {
    if (!$("#sale-group").checked) return null;
    const group = {
      size: Number($("#group-size").value),
      window_seconds: Math.round(Number($("#group-window").value) * 60),
    };
    const leader = $("#group-leader").value.trim();
    if (leader !== "") group.leader_price = Math.round(Number(leader) * minorPerUnit(product.currency));
    return group;
  }

  // --- the offers -----------------------------------------------------------------------------------------

  async function load() {
    if (state.loading) return;
    state.loading = true;
    try {
      const sales = await call("/sales");
      const offers = sales.filter((sale) => sale.group && sale.room_id === room.id).slice(0, SHOWN_OFFERS);
      const known = new Set(state.offers.keys());
      state.offers = new Map(offers.map((sale) => [sale.id, sale]));
      for (const sale of offers) {
        const status = saleStatus(sale, now());
        if (!known.has(sale.id) || status !== "ended" || sale.forming > 0) loadGroups(sale.id);
      }
      render();
    } catch {
      // the next refresh reads them again
    } finally {
      state.loading = false;
    }
  }

  async function loadGroups(saleId) {
    try {
      const groups = await call(`/sales/${encodeURIComponent(saleId)}/groups`);
      state.groups.set(saleId, (Array.isArray(groups) ? groups : groups.groups || []).slice(0, SHOWN_GROUPS));
      render();
    } catch {
      // shown at the next event or refresh
    }
  }

  /** Read an offer and its groups shortly (events come in bursts). */
  function soon(saleId) {
    clearTimeout(state.soon.get(saleId));
    state.soon.set(
      saleId,
      setTimeout(() => {
        state.soon.delete(saleId);
        load();
        loadGroups(saleId);
      }, SOON_MS),
    );
  }

  function render() {
    const at = now();
    const offers = [...state.offers.values()];
    $("#group-buys").hidden = offers.length === 0;
    const list = $("#group-offers");
    for (const [saleId, item] of state.nodes) {
      if (!state.offers.has(saleId)) {
        item.remove();
        state.nodes.delete(saleId);
      }
    }
    offers.forEach((sale, index) => {
      const item = offerItem(sale, at);
      const old = state.nodes.get(sale.id);
      if (old) old.replaceWith(item);
      state.nodes.set(sale.id, item);
      if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
    });
  }

  function offerItem(sale, at) {
    const status = saleStatus(sale, at);
    const terms = sale.group;
    const leader =
      typeof terms.leader_price === "number" && terms.leader_price < sale.price
        ? ` · leader ${money(terms.leader_price, sale.currency)}`
        : "";
    const groups = state.groups.get(sale.id) || [];
    return h(
      "li.sale-item.offer-item",
      { dataset: { saleId: sale.id, status } },
      h(
        "div.sale-top",
        {},
        h("img", { src: safeImage(sale.product.image_url), alt: "" }),
        h(
          "div",
          {},
          h("span.title", {}, sale.product.title),
          h(
            "span.meta",
            {},
            h("strong", {}, money(sale.price, sale.currency)),
            ` for groups of ${terms.size}${leader} · solo ${money(sale.product.price, sale.currency)}`,
            ` · ${windowText(terms.window_seconds * 1000)} to fill`,
          ),
        ),
        h("span.sale-status", {}, STATUS_LABELS[status]),
      ),
      h(
        "div.offer-counts",
        {},
        count("Forming", sale.forming, "forming"),
        count("Filled", sale.filled, "filled"),
        count("Failed", sale.failed, "failed"),
        count("Reserved", sale.reserved, "reserved"),
        count("Sold", sale.sold, "sold", ` of ${sale.quantity}`),
      ),
      h(
        "div.sale-numbers",
        {},
        h("span", {}, `${sale.available} units left for new groups`),
        status === "live" || status === "scheduled" ? timer(sale, status, at) : null,
        mayEnd && (status === "live" || status === "scheduled")
          ? h("button.button-link", { type: "button", on: { click: () => end(sale) } }, "End now")
          : null,
      ),
      groups.length
        ? h("ul.offer-groups", { dataset: { testid: "offer-groups" } }, ...groups.map((group) => groupItem(group, at)))
        : h("p.offer-empty", {}, status === "ended" ? "No groups." : "No groups yet."),
    );
  }

  function groupItem(group, at) {
    const members = group.members || [];
    let when = "";
    if (group.state === "open") when = `${clock(group.expires_at - at)} left`;
    else if (group.closed_at) when = new Date(group.closed_at).toLocaleTimeString([], { timeStyle: "short" });
    return h(
      "li.offer-group",
      { dataset: { groupId: group.id, state: group.state } },
      h("span.group-state", {}, GROUP_LABELS[group.state] || group.state),
      h("span.offer-group-count", {}, `${group.joined} of ${group.size} joined · ${group.paid} paid`),
      h(
        "span.offer-members",
        {},
        ...members.map((member) =>
          h(
            "span.offer-member",
            {
              dataset: { paid: String(Boolean(member.paid)) },
              title: member.order_id ? `Order ${member.order_id}` : "",
            },
            member.leader ? `${member.name} (leader)` : member.name,
            member.order_id ? h("small", {}, ` · ${orderNumber(member.order_id)}`) : null,
          ),
        ),
      ),
      h("span.offer-when", group.state === "open" ? { dataset: { until: String(group.expires_at) } } : {}, when),
    );
  }

  function count(label, value, name, suffix = "") {
    return h("span", { dataset: { count: name } }, h("b", {}, String(value ?? 0)), ` ${label.toLowerCase()}${suffix}`);
  }

  function timer(sale, status, at) {
    const until = status === "scheduled" ? sale.starts_at : sale.ends_at;
    return h(
      "span.timer",
      { dataset: { until: String(until), prefix: status === "scheduled" ? "Starts in" : "Ends in" } },
      `${status === "scheduled" ? "Starts in" : "Ends in"} ${clock(until - at)}`,
    );
  }

  async function end(sale) {
    try {
      const ended = await call(`/sales/${encodeURIComponent(sale.id)}/end`, { method: "POST" });
      room.putSale(ended);
      toast(toasts, "Group buy ended: no new groups; open ones keep their time to fill", { kind: "ok" });
    } catch (error) {
      toast(toasts, `Couldn't end the group buy: ${sentence(error.message)}`, { kind: "error" });
    }
    load();
  }

  /** Countdowns only (no rebuild). */
  function tick() {
    const at = now();
    for (const node of $$("#group-offers [data-until]")) {
      const left = clock(Number(node.dataset.until) - at);
      text(node, node.dataset.prefix ? `${node.dataset.prefix} ${left}` : `${left} left`);
    }
  }

  load();
  setInterval(load, REFRESH_MS);
  return {
    terms: formTerms,
    boardChanged: soon,
    salesChanged: () => {
      if ([...room.sales.values()].some((sale) => sale.group && !state.offers.has(sale.id))) load();
      else render();
    },
    saleChanged: (saleId) => {
      if (room.sales.get(saleId)?.group) soon(saleId);
    },
    tick,
  };
}

function windowText(ms) {
  const seconds = Math.round((ms || 0) / 1000);
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}
