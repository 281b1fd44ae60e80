// The studio's "Share & earn" panel: the merchant's programme (settings and default rates), the rates of a product
// or a sale, its sharers, the flagged commissions to approve or reject, the withdrawals to approve, refuse or retry,
// and the CSV export.

import { ApiError, api } from "./api.js";
import { $, h, minorPerUnit, money, sentence, text, toast } from "./ui.js";

const REFRESH_MS = 10000;
const FLAGS = {
  same_device: "Same device as the buyer",
  same_address: "Same network address as the buyer",
  same_card: "Paid with the sharer's card",
};
const WITHDRAWAL_STATES = {
  requested: "Requested",
  approved: "Approved, sending",
  paid: "Paid",
  failed: "Failed",
  refused: "Refused",
};

/**
 * Show the panel for `merchantId` and keep it current (every REFRESH_MS, and after each action). Admins change the
 * programme and decide; other staff read it.
 */
export function startReferrals({ session, merchantId, role, toasts }) {
  const admin = role === "admin";
  const base = `/api/merchants/${encodeURIComponent(merchantId)}`;
  const state = { program: null, busy: false };
  const call = (path, options = {}) => api(base + path, { session, ...options });

  $("#referrals").hidden = false;
  for (const field of [...$("#ref-form").elements, ...$("#ref-rule-form").elements]) field.disabled = !admin;
  $("#ref-export").hidden = !admin; // the export is the admins'
  if (!admin) text($("#ref-note"), "Fans share your show and earn a commission. Only the shop's admins change this.");

  // --- the programme ---------------------------------------------------------------------------------

  async function loadProgram() {
    try {
      state.program = await call("/referrals");
      renderProgram();
    } catch (error) {
      showError(error);
    }
  }

  function renderProgram() {
    const program = state.program;
    const unit = minorPerUnit(program.currency);
    $("#ref-enabled").checked = program.enabled;
    $("#ref-levels").value = String(program.levels);
    $("#ref-binding").value = program.binding;
    $("#ref-binding-days").value = String(program.binding_days);
    $("#ref-refund-days").value = String(program.refund_days);
    $("#ref-self").checked = program.self_purchase;
    $("#ref-daily-cap").value = program.daily_cap === null ? "" : String(program.daily_cap / unit);
    $("#ref-min-withdrawal").value = String(program.min_withdrawal / unit);
    const rates = program.default || {};
    $("#ref-rate1").value = percentOf(rates.level1);
    $("#ref-rate2").value = percentOf(rates.level2);
    $("#ref-rate2").disabled = !admin || program.levels !== 2;
    $("#referrals").dataset.enabled = String(program.enabled);
    renderRules(program.rules || []);
  }

  // --- the rates of a product or a sale ------------------------------------------------------------------------

  async function loadTargets() {
    const [products, sales] = await Promise.all([
      call("/products").catch(() => []),
      call("/sales").catch(() => []),
    ]);
    const options = [
      ...products.map((product) => h("option", { value: `product/${product.id}` }, `Product: ${product.title}`)),
      ...sales.map((sale) => h("option", { value: `sale/${sale.id}` }, `Sale: ${sale.product?.title || sale.id}`)),
    ];
    $("#ref-rule-for").replaceChildren(...options);
    state.titles = new Map([
      ...products.map((product) => [`product/${product.id}`, product.title]),
      ...sales.map((sale) => [`sale/${sale.id}`, `${sale.product?.title || sale.id} (sale)`]),
    ]);
  }

  function renderRules(rules) {
    $("#ref-rules-empty").hidden = rules.length > 0;
    $("#ref-rules").replaceChildren(
      ...rules.map((rule) => {
        const path = `${rule.scope}/${rule.id}`;
        const rates = [rule.level1, rule.level2].map((rate, index) => rateText(rate, index + 1)).filter(Boolean);
        return h(
          "li.ref-item",
          { dataset: { rule: path } },
          h(
            "div.ref-item-text",
            {},
            h("strong", {}, state.titles?.get(path) || path),
            h("span", {}, rates.join(" · ")),
          ),
          actions([["Remove", "button-secondary", () => removeRule(path)]]),
        );
      }),
    );
  }

  function rateText(rate, level) {
    if (!rate) return "";
    if (rate.fixed !== undefined) return `level ${level}: ${money(rate.fixed, currency())} a unit`;
    return `level ${level}: ${rate.rate_bp / 100}%`;
  }

  $("#ref-rule-form").addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const body = {};
    for (const level of [1, 2]) {
      const typed = $(`#ref-rule-rate${level}`).value.trim();
      if (typed !== "") body[`level${level}`] = { rate_bp: Math.round(Number(typed) * 100) };
    }
    try {
      await call(`/referrals/rules/${$("#ref-rule-for").value}`, { method: "PUT", body });
      toast(toasts, "Rates set", { kind: "ok" });
      $("#ref-rule-form").reset();
      await loadProgram();
    } catch (error) {
      showError(error);
    }
  });

  async function removeRule(path) {
    try {
      await call(`/referrals/rules/${path}`, { method: "DELETE" });
      toast(toasts, "Rates removed: the default applies", { kind: "ok" });
      await loadProgram();
    } catch (error) {
      toast(toasts, `Not done: ${sentence(error.message)}`, { kind: "error" });
    }
  }

  $("#ref-levels").addEventListener("change", (change) => {
    $("#ref-rate2").disabled = !admin || change.target.value !== "2";
  });

  $("#ref-form").addEventListener("submit", async (submit) => {
    submit.preventDefault();
    if (!state.program) return;
    const unit = minorPerUnit(state.program.currency);
    const cap = $("#ref-daily-cap").value.trim();
    const levels = Number($("#ref-levels").value);
    const body = {
      enabled: $("#ref-enabled").checked,
      levels,
      binding: $("#ref-binding").value,
      binding_days: Number($("#ref-binding-days").value),
      refund_days: Number($("#ref-refund-days").value),
      self_purchase: $("#ref-self").checked,
      daily_cap: cap === "" ? null : Math.round(Number(cap) * unit),
      min_withdrawal: Math.round(Number($("#ref-min-withdrawal").value) * unit),
      default: defaultRates(levels),
    };
    const button = $("#ref-save");
    button.disabled = true;
    $("#ref-error").hidden = true;
    try {
      state.program = await call("/referrals", { method: "PUT", body });
      renderProgram();
      toast(toasts, body.enabled ? "Share & earn saved: it's on" : "Share & earn saved: it's off", { kind: "ok" });
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  });

  /** The default rules from the percent fields (a fixed amount set through the API is kept: it wins anyway). */
  function defaultRates(levels) {
    const kept = state.program.default || {};
    const rates = {};
    for (const level of levels === 2 ? [1, 2] : [1]) {
      const typed = $(`#ref-rate${level}`).value.trim();
      const fixed = kept[`level${level}`]?.fixed;
      const rule = {};
      if (typed !== "") rule.rate_bp = Math.round(Number(typed) * 100);
      if (fixed !== undefined) rule.fixed = fixed;
      if (Object.keys(rule).length) rates[`level${level}`] = rule;
    }
    return rates;
  }

  function showError(error) {
    text($("#ref-error"), sentence(error.message || "That didn't work"));
    $("#ref-error").hidden = false;
  }

  // --- sharers, flagged commissions, withdrawals ----------------------------------------------------------

  async function refresh() {
    const [sharers, review, withdrawals] = await Promise.all([
      call("/referrals/sharers").catch(() => null),
      call("/referrals/commissions?state=review").catch(() => null),
      call("/withdrawals").catch(() => null),
    ]);
    if (sharers) renderSharers(listOf(sharers, "sharers"));
    if (review) renderReview(listOf(review, "commissions"));
    if (withdrawals) renderWithdrawals(listOf(withdrawals, "withdrawals"));
  }

  function currency() {
    return state.program?.currency || "USD";
  }

  function renderSharers(sharers) {
    $("#ref-sharers-empty").hidden = sharers.length > 0;
    $("#ref-sharers").hidden = sharers.length === 0;
    const code = currency();
    $("#ref-sharers-body").replaceChildren(
      ...sharers.map((sharer) =>
        h(
          "tr",
          { dataset: { sharerId: sharer.sharer_id || "" } },
          h("td", {}, sharer.name || sharer.sharer_id || ""),
          h("td.number", {}, count(sharer.clicks)),
          h("td.number", {}, count(sharer.buyers)),
          h("td.number", {}, count(sharer.orders)),
          h("td.number", {}, money(sharer.brought, code)),
          h("td.number", {}, money(sharer.earned, code)),
          h("td.number", {}, money(sharer.withdrawable, code)),
          h("td.number", {}, count(sharer.flagged)),
        ),
      ),
    );
  }

  function renderReview(rows) {
    $("#ref-review-empty").hidden = rows.length > 0;
    const code = currency();
    $("#ref-review").replaceChildren(
      ...rows.map((row) =>
        h(
          "li.ref-item",
          { dataset: { entryId: row.entry_id } },
          h(
            "div.ref-item-text",
            {},
            h("strong", {}, money(row.amount, code)),
            h("span", {}, `${sharerOf(row)} · level ${row.level} · order ${short(row.order_id)}`),
            h("span.ref-why", {}, [FLAGS[row.flag] || row.flag, row.note].filter(Boolean).join(" · ")),
          ),
          actions([
            ["Approve", "button-primary", () => decide(`${entry(row)}/approve`, "Commission approved")],
            ["Reject", "button-secondary", () => decide(`${entry(row)}/reject`, "Commission rejected: reversed")],
          ]),
        ),
      ),
    );
  }

  function renderWithdrawals(rows) {
    $("#ref-withdrawals-empty").hidden = rows.length > 0;
    const code = currency();
    $("#ref-withdrawals").replaceChildren(
      ...rows.map((row) => {
        const path = `/withdrawals/${encodeURIComponent(row.payout_id)}`;
        const buttons = [];
        if (row.state === "requested") {
          buttons.push(["Approve", "button-primary", () => decide(`${path}/approve`, "Withdrawal approved: sending")]);
        }
        if (row.state === "failed") {
          buttons.push(["Retry", "button-primary", () => decide(`${path}/retry`, "Withdrawal sent again")]);
        }
        if (row.state === "requested" || row.state === "failed") {
          const refused = "Withdrawal refused: credited back";
          buttons.push(["Refuse", "button-secondary", () => decide(`${path}/refuse`, refused)]);
        }
        return h(
          "li.ref-item",
          { dataset: { payoutId: row.payout_id, state: row.state } },
          h(
            "div.ref-item-text",
            {},
            h("strong", {}, money(row.amount, code)),
            h("span", {}, `${sharerOf(row)} → ${row.recipient || ""}`),
            h("span.ref-state", { dataset: { state: row.state } }, WITHDRAWAL_STATES[row.state] || row.state),
            row.state === "failed" && row.failure ? h("span.ref-why", {}, sentence(row.failure)) : null,
          ),
          buttons.length ? actions(buttons) : null,
        );
      }),
    );
  }

  /** Always-visible buttons (touch screens have no hover); only admins decide. */
  function actions(buttons) {
    return h(
      "div.ref-actions",
      {},
      ...buttons.map(([label, kind, handler]) =>
        h(`button.${kind}.small`, { type: "button", disabled: !admin, on: { click: handler } }, label),
      ),
    );
  }

  async function decide(path, done) {
    if (state.busy) return;
    state.busy = true;
    try {
      await call(path, { method: "POST", body: {} });
      toast(toasts, done, { kind: "ok" });
    } catch (error) {
      toast(toasts, `Not done: ${sentence(error.message)}`, { kind: "error" });
    } finally {
      state.busy = false;
      refresh();
    }
  }

  // --- the CSV export -------------------------------------------------------------------------------------

  $("#ref-export").addEventListener("click", async () => {
    const button = $("#ref-export");
    button.disabled = true;
    try {
      const blob = await download(`${base}/referrals/commissions.csv`);
      const link = h("a.offscreen", { href: URL.createObjectURL(blob), download: `commissions-${merchantId}.csv` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    } catch (error) {
      toast(toasts, `The export didn't work: ${sentence(error.message)}`, { kind: "error" });
    } finally {
      button.disabled = false;
    }
  });

  /** A file behind the Authorization header, as a Blob (a link can't carry the header; a token never goes in one). */
  async function download(path) {
    let token = await session.token();
    let response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    if (response.status === 401) {
      token = await session.token({ rejected: token });
      response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    }
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new ApiError(response.status, body?.error?.code || "error", body?.error?.message || response.statusText);
    }
    return response.blob();
  }

  loadTargets().then(loadProgram);
  refresh();
  setInterval(refresh, REFRESH_MS);
  return { refresh, reload: loadProgram };
}

function entry(row) {
  return `/referrals/commissions/${encodeURIComponent(row.entry_id)}`;
}

function sharerOf(row) {
  return row.sharer_name || row.name || row.sharer_id || "a sharer";
}

/** Rows of a list answer: the list itself, or the list under `name`. */
function listOf(answer, name) {
  if (Array.isArray(answer)) return answer;
  return Array.isArray(answer?.[name]) ? answer[name] : [];
}

function percentOf(rule) {
  return rule && typeof rule.rate_bp === "number" ? String(rule.rate_bp / 100) : "";
}

function count(value) {
  return new Intl.NumberFormat().format(Number(value) || 0);
}

function short(id) {
  return String(id || "").split(".").pop().slice(0, 8).toUpperCase();
}
