// The sharer's "My earnings" page: per shop, the balances, the links with their clicks and buyers, the newest
// commissions, the withdrawals, and a form that asks for a payout. Signed in with the room's Session.

import { Session, api, retrying, storage } from "./api.js";
import { $, h, minorPerUnit, money, sentence, text, toast } from "./ui.js";

const COMMISSION_STATES = {
  frozen: "Frozen",
  withdrawable: "Withdrawable",
  review: "In review",
  reversed: "Reversed",
  rejected: "Rejected",
};
const WITHDRAWAL_STATES = {
  requested: "Requested",
  approved: "Approved",
  paid: "Paid",
  failed: "Failed",
  refused: "Refused",
};

const page = $("#earnings");
const toasts = $("#toasts");
const roomId = new URLSearchParams(location.search).get("room") || "demo";
// The shopper's session, the one the room signs in with (localStorage).
const session = new Session(storage("local"), "livecart.session");

function show(state) {
  page.dataset.state = state;
}

async function load() {
  const user = session.user;
  if (!user || user.guest) {
    show("signed-out");
    return;
  }
  text($("#earnings-who"), `Signed in as ${user.name}`);
  try {
    const mine = await api("/api/me/earnings", { session });
    render(mine);
    $("#earnings-error").hidden = true;
    show("ready");
  } catch (error) {
    if (error.status === 401 || error.code === "sign_in_required") {
      show("signed-out");
      return;
    }
    text($("#earnings-error"), sentence(error.message || "We couldn't load your earnings"));
    $("#earnings-error").hidden = false;
    show("error");
  }
}

/** Every shop the sharer has links or money with, newest numbers first. */
function render(mine) {
  const merchants = Array.isArray(mine) ? mine : mine.merchants || [];
  $("#earnings-empty").hidden = merchants.length > 0;
  $("#merchants").replaceChildren(...merchants.map(merchantSection));
}

function merchantSection(entry) {
  const summary = entry.summary || {};
  const merchantId = entry.merchant_id ?? summary.merchant_id;
  const currency = summary.currency || entry.program?.currency || "USD";
  const section = h(
    "section.column-card.earnings-card.merchant",
    { dataset: { merchantId }, "aria-label": `Earnings with @${merchantId}` },
    h("header.merchant-head", {}, h("h2", {}, entry.name || `@${merchantId}`), h("span.hint", {}, currency)),
    h(
      "div.balances",
      {},
      balance("Withdrawable", summary.withdrawable, currency, "withdrawable"),
      balance("Frozen", summary.frozen, currency, "frozen"),
      balance("In review", summary.review, currency, "review"),
      balance("Withdrawn", summary.withdrawn, currency, "withdrawn"),
    ),
    withdrawForm(merchantId, currency, summary, entry),
    table(
      "My links",
      ["Link", "Clicks", "Buyers"],
      (entry.links || []).map((link) => [
        h("a.link-url", { href: link.url, title: absolute(link.url), target: "_blank", rel: "noopener" }, label(link)),
        number(link.clicks),
        number(link.buyers ?? link.bound),
      ]),
      "No links yet: use the Share button in a show.",
      "links",
    ),
    table(
      "Newest commissions",
      ["When", "Order", "Level", "Amount", "State"],
      (entry.commissions || []).map((row) => [
        when(row),
        h("code", {}, shortId(row.order_id)),
        String(row.level ?? ""),
        money(row.amount, currency),
        pill(row.state, COMMISSION_STATES),
      ]),
      "No commissions yet.",
      "commissions",
    ),
    table(
      "Withdrawals",
      ["When", "Amount", "To", "State"],
      (entry.withdrawals || []).map((row) => [
        when(row),
        money(row.amount, currency),
        row.recipient || "",
        pill(row.state, WITHDRAWAL_STATES),
      ]),
      "No withdrawals yet.",
      "withdrawals",
    ),
  );
  return section;
}

function balance(label, amount, currency, name) {
  const shown = h("strong", {}, money(amount, currency));
  return h("div.balance", { dataset: { balance: name } }, h("span", {}, label), shown);
}

function table(title, headings, rows, empty, name) {
  const block = h("div.block", { dataset: { block: name } }, h("h3", {}, title));
  if (!rows.length) {
    block.append(h("p.block-empty", {}, empty));
    return block;
  }
  block.append(
    h(
      "div.table-scroll",
      {},
      h(
        "table.rows",
        {},
        h("thead", {}, h("tr", {}, ...headings.map((heading) => h("th", { scope: "col" }, heading)))),
        h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((cell) => h("td", {}, cell))))),
      ),
    ),
  );
  return block;
}

/** What a link opens, as people read it (its address is its title). */
function label(link) {
  return link.product_id ? `Product ${link.product_id}` : `Show ${link.room_id}`;
}

function absolute(url) {
  return new URL(url, location.origin).href;
}

function pill(state, labels) {
  return h("span.state", { dataset: { state: state || "" } }, labels[state] || state || "");
}

function when(row) {
  const value = row.at ?? row.created_at ?? row.requested_at;
  if (value === undefined || value === null) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function number(value) {
  return new Intl.NumberFormat().format(Number(value) || 0);
}

function shortId(id) {
  return String(id || "").split(".").pop().slice(0, 8).toUpperCase();
}

// --- asking for a payout ----------------------------------------------------------------------------------

function withdrawForm(merchantId, currency, summary, entry) {
  const unit = minorPerUnit(currency);
  const available = Math.max(0, Number(summary.withdrawable) || 0);
  const least = Number(entry.program?.min_withdrawal) || 0;
  const amount = h("input", {
    name: "amount",
    type: "number",
    min: String((least || 1) / unit),
    step: String(1 / unit),
    inputMode: "decimal",
    required: true,
    value: available ? String(available / unit) : "",
  });
  const recipient = h("input", {
    name: "recipient",
    type: "email",
    autocomplete: "email",
    maxLength: 254,
    placeholder: "payouts@you.example",
    required: true,
  });
  const error = h("p.form-error", { role: "alert", hidden: true });
  const limits = least
    ? `At least ${money(least, currency)}, at most ${money(available, currency)}.`
    : `At most ${money(available, currency)}.`;
  const submitButton = h("button.button-primary", { type: "submit", disabled: available <= 0 }, "Withdraw");
  const form = h(
    "form.withdraw-form",
    { autocomplete: "on" },
    h("h3", {}, "Withdraw"),
    h("label.field", {}, h("span", {}, `Amount (${currency})`), amount),
    h("label.field", {}, h("span", {}, "Pay to (email of your payout account)"), recipient),
    h("p.hint", {}, limits),
    error,
    submitButton,
  );
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    error.hidden = true;
    const minor = Math.round(Number(amount.value) * unit);
    if (!Number.isFinite(minor) || minor <= 0) {
      text(error, "Enter an amount.");
      error.hidden = false;
      return;
    }
    submitButton.disabled = true;
    // One key per submission, kept for its retries: a reply lost on the way never asks for a second payout.
    const key = crypto.randomUUID();
    try {
      await retrying(() =>
        api(`/api/merchants/${encodeURIComponent(merchantId)}/withdrawals`, {
          method: "POST",
          session,
          body: { amount: minor, recipient: recipient.value.trim() },
          headers: { "Idempotency-Key": key },
        }),
      );
      toast(toasts, `Withdrawal of ${money(minor, currency)} requested`, { kind: "ok" });
      await load();
    } catch (refused) {
      text(error, sentence(refused.message || "That didn't work"));
      error.hidden = false;
      submitButton.disabled = false;
    }
  });
  return form;
}

// --- start ---------------------------------------------------------------------------------------------

for (const link of [$("#back-to-room"), $("#signin-link")]) link.href = `/room.html?room=${encodeURIComponent(roomId)}`;
session.onChange(() => load()); // signed in or out in another tab
window.livecart = { session, reload: load };
load();
