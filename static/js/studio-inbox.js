// The studio's Messages panel (docs/customer-service.md): the shop's threads by state and assignee with their unread
// counts, one thread with its messages and the buyer's orders, Assign, Resolve / Reopen, the reply box (canned replies
// filled in, typing, receipts), "Answer in public", and the show's first-response figure. Kept current by the
// personal `service.*` events the page hands it, and read again when the room socket comes back.

import { api, randomKey } from "./api.js";
import { Event } from "./protocol.js";
import { MAX_MESSAGE_LENGTH } from "./service-thread.js";
import { startReplies } from "./studio-replies.js";
import { $, $$, h, money, orderNumber, sentence, text, toast } from "./ui.js";

const PAGE = 30; // threads per read
const MESSAGES_PAGE = 50;
const SOON_MS = 800; // a burst of events reads the list (and its counts) once
const LIST_REFRESH_MS = 60000;
const FIGURE_REFRESH_MS = 30000;
const TYPING_EVERY_MS = 3000; // our typing signal, at most this often
const TYPING_SHOWN_MS = 5000; // the buyer's "typing…", hidden after this long without another
const STATE_LABELS = { open: "Open", pending: "Pending", resolved: "Resolved" };
const EMPTY_LABELS = {
  open: "No open threads: nobody is waiting for an answer.",
  pending: "No threads waiting on a buyer.",
  resolved: "No resolved threads.",
};
const ORDER_LABELS = {
  held: "Awaiting payment",
  paid: "Paid",
  expired: "Expired",
  cancelled: "Cancelled",
  refunded: "Refunded",
};
const PUBLIC_LABELS = { asked: "Asked the buyer…", posted: "Posted in chat", declined: "Buyer kept it private" };

/**
 * Show the Messages panel of `merchantId` for the signed-in staff member `me` ({id, name}) with `role` in the shop.
 * The page hands it the personal events (event(event)) and tells it when the room socket is open again
 * (connected()), so the unread counts are right after any drop. `products()` gives the shop's products (for the
 * title of a product a message is about).
 */
export function startInbox({ session, merchantId, roomId, me, role, toasts, products = () => [] }) {
  const shop = `/api/merchants/${encodeURIComponent(merchantId)}`;
  const call = (path, options = {}) => api(`${shop}/service${path}`, { session, ...options });
  const threadPath = (id) => `/threads/${encodeURIComponent(id)}`;
  const state = {
    filter: { state: "open", assignee: "" }, // assignee: "me", "none" or "" (everyone's)
    threads: new Map(), // thread id -> the staff thread, those the list shows
    more: false, // older threads to load
    counts: { open: 0, pending: 0, resolved: 0, unread: 0 },
    listing: false,
    again: false, // read the list again when the read in flight ends
    soon: null,
    staff: null, // the shop's staff [{user_id, name}] (admins may list them), else null
    open: null, // the thread shown: {id, thread, messages, more, orders, loaded, readUpTo}
    typing: new Map(), // thread id -> {name, timer}: the buyer is typing
    typingSent: 0,
    drafts: new Map(), // thread id -> the reply box's text while another thread is shown
    pending: null, // {threadId, text, key}: a reply not known to be stored (network error, 503): a retry keeps the key
    sending: false,
    publicForm: null, // {messageId, node, key, text}: the "Answer in public" form, kept across redraws
    menuOpen: false,
  };

  $("#messages").hidden = false;
  $("#messages-link").hidden = false;
  const box = $("#inbox-text");
  const scroller = $("#inbox-scroll");

  // --- the thread list ------------------------------------------------------------------------------------

  for (const tab of $$(".inbox-tabs [role=tab]")) {
    tab.addEventListener("click", () => setFilter({ state: tab.dataset.state }));
  }
  for (const button of $$(".inbox-filter button")) {
    button.addEventListener("click", () => setFilter({ assignee: button.dataset.assignee }));
  }
  $("#inbox-more").addEventListener("click", () => loadList({ more: true }));

  function setFilter(change) {
    const next = { ...state.filter, ...change };
    if (next.state === state.filter.state && next.assignee === state.filter.assignee) return;
    state.filter = next;
    state.threads.clear();
    state.more = false;
    for (const tab of $$(".inbox-tabs [role=tab]")) {
      tab.setAttribute("aria-selected", String(tab.dataset.state === next.state));
    }
    for (const button of $$(".inbox-filter button")) {
      button.setAttribute("aria-pressed", String(button.dataset.assignee === next.assignee));
    }
    renderList();
    loadList();
  }

  /** Read the first page of threads (merged with older ones already shown), or with `more` the next page. */
  async function loadList({ more = false } = {}) {
    if (state.listing) {
      if (!more) state.again = true;
      return;
    }
    state.listing = true;
    const filter = { ...state.filter };
    const query = new URLSearchParams({ state: filter.state, limit: String(PAGE) });
    if (filter.assignee) query.set("assignee", filter.assignee);
    const shown = sorted();
    if (more && shown.length) query.set("before", String(shown[shown.length - 1].updated_at));
    $("#inbox-more").disabled = true;
    try {
      const answer = await call(`/threads?${query}`);
      if (filter.state === state.filter.state && filter.assignee === state.filter.assignee) {
        state.counts = { ...state.counts, ...answer.counts };
        merge(answer.threads || [], more);
      }
      showError(null);
    } catch (error) {
      showError(error);
    } finally {
      state.listing = false;
      $("#inbox-more").disabled = false;
    }
    renderList();
    renderCounts();
    if (state.again) {
      state.again = false;
      loadList();
    }
  }

  function merge(page, more) {
    const full = page.length >= PAGE;
    if (more) {
      for (const thread of page) state.threads.set(String(thread.id), thread);
      state.more = full;
      return;
    }
    // The first page: it is the whole list down to its oldest thread; older ones already shown are kept.
    const oldest = full ? Math.min(...page.map((thread) => thread.updated_at)) : -Infinity;
    let keptOlder = false;
    for (const [id, thread] of state.threads) {
      if (thread.updated_at < oldest) keptOlder = true;
      else state.threads.delete(id);
    }
    for (const thread of page) state.threads.set(String(thread.id), thread);
    state.more = full && (keptOlder ? state.more : true);
  }

  /** Read the list shortly, once for a burst of events (and at least every SOON_MS in a steady stream of them);
   *  its counts are the server's. */
  function listSoon() {
    if (state.soon) return;
    state.soon = setTimeout(() => {
      state.soon = null;
      loadList();
    }, SOON_MS);
  }

  function matches(thread) {
    const { assignee } = state.filter;
    if (thread.state !== state.filter.state) return false;
    if (assignee === "me") return thread.assignee === me.id;
    if (assignee === "none") return !thread.assignee;
    return true;
  }

  function sorted() {
    return [...state.threads.values()].sort((a, b) => b.updated_at - a.updated_at);
  }

  /** A thread as it is now (an event or an answer): its row, its counts, the open thread. */
  function putThread(thread, { redraw = true } = {}) {
    if (!thread) return;
    const id = String(thread.id);
    const known = state.threads.get(id) || (state.open?.id === id ? state.open.thread : null);
    if (known && known.updated_at > thread.updated_at) return; // an older copy arriving late
    if (known) state.counts.unread = Math.max(0, state.counts.unread + (thread.unread || 0) - (known.unread || 0));
    const shown = sorted();
    const oldest = shown.length ? shown[shown.length - 1].updated_at : -Infinity;
    if (matches(thread) && (!state.more || thread.updated_at >= oldest)) state.threads.set(id, thread);
    else state.threads.delete(id);
    if (state.open?.id === id) {
      state.open.thread = thread;
      if (redraw) renderThread();
    }
    renderList();
    renderCounts();
    listSoon();
  }

  function renderCounts() {
    for (const node of $$(".inbox-tabs [data-count]")) text(node, state.counts[node.dataset.count] ?? 0);
    const unread = state.counts.unread || 0;
    for (const badge of [$("#inbox-unread"), $("#messages-link-unread")]) {
      badge.hidden = unread === 0;
      text(badge, badgeText(unread));
      badge.setAttribute("aria-label", `${unread} unread`);
    }
  }

  function renderList() {
    const threads = sorted();
    const list = $("#inbox-threads");
    const focused = list.contains(document.activeElement) ? document.activeElement.closest(".inbox-row") : null;
    list.replaceChildren(...threads.map(row));
    if (focused) {
      const again = $(`.inbox-row[data-thread-id="${CSS.escape(focused.dataset.threadId)}"] button`, list);
      again?.focus({ preventScroll: true }); // a keyboard user stays on their row
    }
    const empty = $("#inbox-threads-empty");
    empty.hidden = threads.length > 0 || state.listing;
    text(empty, EMPTY_LABELS[state.filter.state]);
    $("#inbox-more").hidden = !state.more;
  }

  function row(thread) {
    const id = String(thread.id);
    const typing = state.typing.get(id);
    const unread = thread.unread || 0;
    const last = thread.last_message;
    let preview = last ? last.text : "";
    if (last && last.side === "staff") preview = `${last.author_name || "Staff"}: ${preview}`;
    return h(
      "li.inbox-row",
      { dataset: { threadId: id, state: thread.state, unread: String(unread) } },
      h(
        "button.inbox-row-button",
        {
          type: "button",
          "aria-current": state.open?.id === id ? "true" : undefined,
          on: { click: () => openThread(id) },
        },
        h(
          "span.inbox-row-top",
          {},
          h("strong.inbox-row-name", {}, thread.buyer_name || "A buyer"),
          h(
            "time.inbox-row-time",
            { dateTime: iso(thread.updated_at), title: full(thread.updated_at) },
            when(thread.updated_at),
          ),
        ),
        h("span.inbox-row-preview", typing ? { dataset: { typing: "true" } } : {}, typing ? "typing…" : preview),
        h(
          "span.inbox-row-bottom",
          {},
          h("span.inbox-row-assignee", {}, assigneeText(thread)),
          thread.blocked ? h("span.inbox-flag", {}, "Blocked the shop") : null,
          unread ? h("span.inbox-badge", { "aria-label": `${unread} unread` }, badgeText(unread)) : null,
        ),
      ),
    );
  }

  function assigneeText(thread) {
    if (!thread.assignee) return "Unassigned";
    return thread.assignee === me.id ? "Assigned to you" : `Assigned to ${thread.assignee_name || "someone"}`;
  }

  // --- one thread ------------------------------------------------------------------------------------------

  async function openThread(id) {
    if (state.open?.id === id) return;
    closeThread();
    state.open = {
      id,
      thread: state.threads.get(id) || null,
      messages: [],
      more: false,
      orders: [],
      loaded: false,
      readUpTo: 0, // the newest buyer message known read: a receipt goes for anything newer
    };
    box.value = state.drafts.get(id) || "";
    $("#inbox").dataset.open = "true";
    renderThread();
    renderList();
    if (matchMedia("(max-width: 859px)").matches) $("#inbox-thread").scrollIntoView({ block: "start" });
    await loadThread();
  }

  function closeThread() {
    const open = state.open;
    if (!open) return;
    if (box.value.trim()) state.drafts.set(open.id, box.value);
    else state.drafts.delete(open.id);
    state.open = null;
    state.publicForm = null;
    closeMenu();
    $("#inbox-send-error").hidden = true;
  }

  $("#inbox-back").addEventListener("click", () => {
    closeThread();
    $("#inbox").dataset.open = "false";
    renderThread();
    renderList();
    $("#messages").scrollIntoView({ block: "start" });
  });

  /** Read the open thread: its newest messages (merged with those shown), or with `earlier` the page before. */
  async function loadThread({ earlier = false } = {}) {
    const open = state.open;
    if (!open) return;
    const query = new URLSearchParams({ limit: String(MESSAGES_PAGE) });
    if (earlier && open.messages.length) query.set("before", String(open.messages[0].id));
    $("#inbox-earlier").disabled = true;
    try {
      const answer = await call(`${threadPath(open.id)}?${query}`);
      if (state.open !== open) return;
      if (!open.loaded && !(answer.thread.unread > 0)) open.readUpTo = newestBuyer(answer.messages)?.id || 0;
      open.messages = mergeMessages(open.messages, answer.messages || []);
      if (earlier || !open.loaded) open.more = Boolean(answer.more);
      open.orders = answer.orders || [];
      const first = !open.loaded;
      open.loaded = true;
      const known = state.threads.get(open.id);
      open.thread = known && known.updated_at > answer.thread.updated_at ? known : answer.thread;
      putThread(answer.thread, { redraw: false });
      renderThread({ scroll: earlier ? "keep" : first ? "end" : "auto" });
      showError(null);
      readReceipt();
    } catch (error) {
      if (state.open === open) showError(error);
    } finally {
      $("#inbox-earlier").disabled = false;
    }
  }

  $("#inbox-earlier").addEventListener("click", () => loadThread({ earlier: true }));

  function renderThread({ scroll = "auto" } = {}) {
    const open = state.open;
    $("#inbox-placeholder").hidden = Boolean(open);
    $("#inbox-open").hidden = !open;
    $("#inbox-orders-pane").hidden = !open;
    $("#inbox").dataset.open = String(Boolean(open));
    if (!open) return;
    const thread = open.thread;
    $("#inbox-open").dataset.threadId = open.id;
    text($("#inbox-buyer"), thread?.buyer_name || "…");
    const label = $("#inbox-state-label");
    label.dataset.state = thread?.state || "";
    text(label, STATE_LABELS[thread?.state] || "");
    const resolve = $("#inbox-resolve");
    resolve.disabled = !thread;
    text(resolve, thread?.state === "resolved" ? "Reopen" : "Resolve");
    renderAssign(thread);
    const blocked = Boolean(thread?.blocked);
    $("#inbox-blocked").hidden = !blocked;
    box.disabled = blocked;
    $("#inbox-send").disabled = blocked || state.sending;
    $("#inbox-canned-toggle").disabled = blocked;
    $("#inbox-earlier").hidden = !open.more;
    renderMessages(scroll);
    renderTyping();
    renderOrders();
    renderBox();
  }

  function renderMessages(scroll) {
    const open = state.open;
    const thread = open.thread || {};
    const atEnd = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
    const fromEnd = scroller.scrollHeight - scroller.scrollTop;
    const answered = new Set(
      open.messages.filter((message) => message.public).map((message) => String(message.public.question_id)),
    );
    const lastStaff = newest(open.messages, "staff");
    const list = $("#inbox-messages");
    if (open.loaded && !open.messages.length) {
      list.replaceChildren(h("li.inbox-none", {}, "No messages yet."));
    } else {
      list.replaceChildren(
        ...open.messages.map((message) =>
          messageItem(message, {
            receipt: message === lastStaff ? receiptOf(message, thread) : null,
            mayAnswer:
              message.side === "buyer" && message.room_id && !thread.blocked && !answered.has(String(message.id)),
          }),
        ),
      );
    }
    if (scroll === "keep") scroller.scrollTop = scroller.scrollHeight - fromEnd;
    else if (scroll === "end" || atEnd) scroller.scrollTop = scroller.scrollHeight;
  }

  function messageItem(message, { receipt, mayAnswer }) {
    const about = [];
    if (message.order_id) about.push(`about order ${orderNumber(message.order_id)}`);
    if (message.product_id) about.push(`about ${productTitle(message.product_id)}`);
    const form = state.publicForm;
    return h(
      "li.inbox-message",
      { dataset: { messageId: String(message.id), side: message.side } },
      h(
        "div.inbox-bubble",
        {},
        message.public
          ? h("p.inbox-quote", {}, h("span", {}, "In public, answering: "), `“${message.public.question || ""}”`)
          : null,
        h("p.inbox-text", {}, message.text),
      ),
      h(
        "p.inbox-meta",
        {},
        h("span.inbox-author", {}, message.author_name || (message.side === "buyer" ? "Buyer" : "Staff")),
        h("time", { dateTime: iso(message.at), title: full(message.at) }, when(message.at, true)),
        about.length ? h("span", {}, about.join(" · ")) : null,
        message.public
          ? h("span.inbox-public", { dataset: { state: message.public.state } }, PUBLIC_LABELS[message.public.state])
          : null,
        receipt ? h("span.inbox-receipt", { dataset: { receipt: receipt.toLowerCase() } }, receipt) : null,
        mayAnswer && form?.messageId !== String(message.id)
          ? h(
              "button.button-link.inbox-answer",
              { type: "button", on: { click: () => answerInPublic(message) } },
              "Answer in public",
            )
          : null,
      ),
      form && form.messageId === String(message.id) ? form.node : null,
    );
  }

  function receiptOf(message, thread) {
    if (message.id <= (thread.buyer_read || 0)) return "Seen";
    if (message.id <= (thread.buyer_delivered || 0)) return "Delivered";
    return "Sent";
  }

  function productTitle(productId) {
    const order = (state.open?.orders || []).find((item) => item.product?.id === productId);
    return order?.product.title || products().find((product) => product.id === productId)?.title || productId;
  }

  function renderOrders() {
    const orders = state.open?.orders || [];
    $("#inbox-orders-empty").hidden = orders.length > 0;
    $("#inbox-orders").replaceChildren(
      ...orders.map((order) =>
        h(
          "li.inbox-order",
          { dataset: { orderId: order.order_id, status: order.status } },
          h("strong", {}, order.product?.title || "An order"),
          h(
            "span",
            {},
            `${order.quantity > 1 ? `${order.quantity} × ` : ""}${money(order.amount, order.currency)} · `,
            h(
              "span.inbox-order-status",
              { dataset: { status: order.status } },
              ORDER_LABELS[order.status] || order.status,
            ),
          ),
          h("small", {}, `${orderNumber(order.order_id)} · ${full(order.created_at)}`),
        ),
      ),
    );
  }

  // --- assign, resolve, reopen -----------------------------------------------------------------------------

  const assignIds = new Map(); // option value -> the user id it stands for (null: nobody)

  function renderAssign(thread) {
    const select = $("#inbox-assign");
    select.disabled = !thread;
    const people = [[me.id, `Me (${me.name})`]];
    for (const member of state.staff || []) {
      if (member.user_id !== me.id) people.push([member.user_id, member.name || member.email || member.user_id]);
    }
    if (thread?.assignee && !people.some(([id]) => id === thread.assignee)) {
      people.push([thread.assignee, thread.assignee_name || "Someone else"]); // shown, so the box says who has it
    }
    assignIds.clear();
    assignIds.set("", null);
    const options = [h("option", { value: "" }, "Nobody")];
    for (const [id, name] of people) {
      assignIds.set(`u:${id}`, id);
      options.push(h("option", { value: `u:${id}` }, name));
    }
    select.replaceChildren(...options);
    select.value = thread?.assignee ? `u:${thread.assignee}` : "";
  }

  $("#inbox-assign").addEventListener("change", async (change) => {
    const open = state.open;
    if (!open) return;
    const userId = assignIds.get(change.target.value) ?? null;
    try {
      const answer = await call(`${threadPath(open.id)}/assign`, { method: "POST", body: { user_id: userId } });
      putThread(answer.thread);
      toast(toasts, userId ? `Assigned to ${userId === me.id ? "you" : answer.thread.assignee_name}` : "Unassigned", {
        kind: "ok",
      });
    } catch (error) {
      toast(toasts, `Not assigned: ${sentence(error.message)}`, { kind: "error" });
      renderAssign(open.thread);
    }
  });

  $("#inbox-resolve").addEventListener("click", async () => {
    const open = state.open;
    if (!open?.thread) return;
    const next = open.thread.state === "resolved" ? "open" : "resolved";
    const button = $("#inbox-resolve");
    button.disabled = true;
    try {
      const answer = await call(`${threadPath(open.id)}/state`, { method: "POST", body: { state: next } });
      putThread(answer.thread);
      toast(toasts, next === "resolved" ? "Resolved" : "Reopened", { kind: "ok" });
    } catch (error) {
      toast(toasts, `Not changed: ${sentence(error.message)}`, { kind: "error" });
    } finally {
      button.disabled = false;
    }
  });

  // --- the reply box ---------------------------------------------------------------------------------------

  $("#inbox-reply").addEventListener("submit", (submit) => {
    submit.preventDefault();
    send();
  });

  // Enter sends, Shift+Enter is a new line; on a touch screen Enter is a new line and Send sends.
  const touch = matchMedia("(pointer: coarse)");
  box.addEventListener("keydown", (key) => {
    if (key.key === "Enter" && !key.shiftKey && !key.isComposing && !touch.matches) {
      key.preventDefault();
      send();
    }
  });

  box.addEventListener("input", typed);

  /** The box changed: its count, and the typing signal (at most one per TYPING_EVERY_MS). */
  function typed() {
    renderBox();
    const open = state.open;
    if (!open || !box.value.trim() || Date.now() - state.typingSent < TYPING_EVERY_MS) return;
    state.typingSent = Date.now();
    call(`${threadPath(open.id)}/typing`, { method: "POST", body: {} }).catch(() => {}); // a hint: lost is fine
  }

  /** The count of characters, and "Send again" while the box holds a reply whose sending failed. */
  function renderBox() {
    const length = box.value.length;
    const chars = $("#inbox-chars");
    text(chars, `${length} / ${MAX_MESSAGE_LENGTH}`);
    chars.dataset.full = String(length >= MAX_MESSAGE_LENGTH);
    const pending = state.pending;
    const again = pending && pending.threadId === state.open?.id && pending.text === box.value.trim();
    text($("#inbox-send"), again ? "Send again" : "Send");
  }

  async function send() {
    const open = state.open;
    const value = box.value.trim();
    if (!open || !value || state.sending || open.thread?.blocked) return;
    // The same text again after a failure that may have stored it: the same key, so it is stored once.
    const kept = state.pending;
    const same = kept && kept.threadId === open.id && kept.text === value;
    const pending = same ? kept : { threadId: open.id, text: value };
    pending.key = pending.key || randomKey("s");
    state.pending = pending;
    state.sending = true;
    const button = $("#inbox-send");
    button.disabled = true;
    $("#inbox-send-error").hidden = true;
    try {
      const answer = await call(`${threadPath(open.id)}/messages`, {
        method: "POST",
        body: { text: value },
        headers: { "Idempotency-Key": pending.key },
      });
      state.pending = null;
      if (state.open === open && box.value.trim() === value) box.value = "";
      else if (state.drafts.get(open.id)?.trim() === value) state.drafts.delete(open.id);
      received(answer.thread, answer.message);
      figureSoon();
    } catch (error) {
      const retry = error.status === 0 || error.status >= 500;
      if (!retry) state.pending = null;
      if (state.open === open) {
        const note = retry ? " Your text is kept: press Send again." : "";
        text($("#inbox-send-error"), `Not sent: ${sentence(error.message)}${note}`);
        $("#inbox-send-error").hidden = false;
      } else {
        toast(toasts, `A reply wasn't sent: ${sentence(error.message)}`, { kind: "error" });
      }
    } finally {
      state.sending = false;
      button.disabled = Boolean(state.open?.thread?.blocked);
      renderBox();
    }
  }

  // --- canned replies, picked ------------------------------------------------------------------------------

  const menu = $("#inbox-canned-menu");
  const menuButton = $("#inbox-canned-toggle");

  menuButton.addEventListener("click", async () => {
    if (state.menuOpen) {
      closeMenu();
      return;
    }
    const open = state.open;
    if (!open) return;
    state.menuOpen = true;
    menu.hidden = false;
    menuButton.setAttribute("aria-expanded", "true");
    menu.replaceChildren(h("p.inbox-menu-note", {}, "Loading…"));
    try {
      const answer = await call(`${threadPath(open.id)}/replies`);
      if (!state.menuOpen || state.open !== open) return;
      const replies = answer.replies || [];
      menu.replaceChildren(
        ...(replies.length
          ? replies.map((reply) =>
              h(
                "button.inbox-menu-item",
                {
                  type: "button",
                  role: "menuitem",
                  dataset: { replyId: String(reply.id) },
                  on: { click: () => pick(reply) },
                },
                h("strong", {}, reply.title),
                h("span", {}, reply.text),
              ),
            )
          : [h("p.inbox-menu-note", {}, "No canned replies yet: add them under “Canned replies” below.")]),
      );
      menu.querySelector("button")?.focus();
    } catch (error) {
      if (state.menuOpen) menu.replaceChildren(h("p.inbox-menu-note", {}, sentence(error.message)));
    }
  });

  function pick(reply) {
    closeMenu();
    const start = box.selectionStart ?? box.value.length;
    const end = box.selectionEnd ?? box.value.length;
    const before = box.value.slice(0, start);
    const spacer = before && !/\s$/.test(before) ? " " : "";
    box.setRangeText(spacer + reply.text, start, end, "end");
    box.focus();
    typed();
  }

  function closeMenu() {
    state.menuOpen = false;
    menu.hidden = true;
    menuButton.setAttribute("aria-expanded", "false");
  }

  document.addEventListener("click", (click) => {
    if (state.menuOpen && !click.target.closest(".inbox-canned")) closeMenu();
  });
  document.addEventListener("keydown", (key) => {
    if (key.key === "Escape" && state.menuOpen) {
      closeMenu();
      menuButton.focus();
    }
  });

  // --- answer in public ------------------------------------------------------------------------------------

  function answerInPublic(message) {
    const field = h("textarea.input", {
      rows: 2,
      maxLength: MAX_MESSAGE_LENGTH,
      required: true,
      "aria-label": "Answer for the room",
      placeholder: "Your answer, for everyone in the room",
    });
    const error = h("p.form-error", { role: "alert", hidden: true });
    const submit = h("button.button-primary.small", { type: "submit" }, "Ask to post it");
    const node = h(
      "form.inbox-public-form",
      { dataset: { testid: "public-answer-form" }, on: { submit: (event) => sendPublic(event, message) } },
      h(
        "p.hint",
        {},
        "The buyer is asked first. If they allow it, the room's chat shows your answer and their question, without " +
          "their name.",
      ),
      field,
      error,
      h(
        "div.inbox-public-actions",
        {},
        submit,
        h("button.button-link", { type: "button", on: { click: () => closePublic() } }, "Cancel"),
      ),
    );
    state.publicForm = { messageId: String(message.id), node, field, error, submit, key: null, text: null };
    renderMessages("auto");
    field.focus();
  }

  function closePublic() {
    state.publicForm = null;
    if (state.open) renderMessages("auto");
  }

  async function sendPublic(event, message) {
    event.preventDefault();
    const form = state.publicForm;
    const open = state.open;
    const value = form.field.value.trim();
    if (!open || !value) return;
    if (form.text !== value) form.key = randomKey("p");
    form.text = value;
    form.submit.disabled = true;
    form.error.hidden = true;
    try {
      const answer = await call(`${threadPath(open.id)}/public`, {
        method: "POST",
        body: { message_id: message.id, text: value },
        headers: { "Idempotency-Key": form.key },
      });
      if (state.publicForm === form) state.publicForm = null;
      received(answer.thread, answer.message);
      toast(toasts, "Asked the buyer: it goes in the chat if they allow it", { kind: "ok" });
    } catch (error) {
      if (!(error.status === 0 || error.status >= 500)) form.key = null;
      text(form.error, sentence(error.message));
      form.error.hidden = false;
    } finally {
      form.submit.disabled = false;
    }
  }

  // --- receipts and typing ---------------------------------------------------------------------------------

  /** Tell the shop (and the buyer: "Seen") that the newest buyer message shown is read, while the page is seen. */
  async function readReceipt() {
    const open = state.open;
    if (!open?.loaded || document.visibilityState !== "visible") return;
    const message = newestBuyer(open.messages);
    if (!message || message.id <= open.readUpTo) return;
    const before = open.readUpTo;
    open.readUpTo = message.id;
    try {
      const answer = await call(`${threadPath(open.id)}/receipt`, { method: "POST", body: { read: message.id } });
      putThread(answer.thread);
    } catch {
      if (open.readUpTo === message.id) open.readUpTo = before; // tried again at the next message or visit
    }
  }

  document.addEventListener("visibilitychange", readReceipt);

  function typing(event) {
    if (event.side !== "buyer") return;
    const id = String(event.thread_id);
    clearTimeout(state.typing.get(id)?.timer);
    const timer = setTimeout(() => stopTyping(id), TYPING_SHOWN_MS);
    state.typing.set(id, { name: event.name, timer });
    renderTyping();
    renderList();
  }

  function stopTyping(id) {
    const known = state.typing.get(id);
    if (!known) return;
    clearTimeout(known.timer);
    state.typing.delete(id);
    renderTyping();
    renderList();
  }

  function renderTyping() {
    const typist = state.open ? state.typing.get(state.open.id) : null;
    const line = $("#inbox-typing");
    line.hidden = !typist;
    text(line, typist ? `${typist.name || state.open.thread?.buyer_name || "The buyer"} is typing…` : "");
  }

  // --- events ----------------------------------------------------------------------------------------------

  /** A message now in a thread (an event, or the answer to our own): the row, and the open thread. */
  function received(thread, message) {
    const id = String(message.thread_id);
    if (message.side === "buyer") stopTyping(id);
    const open = state.open;
    const shown = open?.id === id && open.loaded;
    if (shown) open.messages = mergeMessages(open.messages, [message]);
    putThread(thread, { redraw: false });
    if (shown) {
      renderThread();
      if (message.side === "buyer") readReceipt();
    }
  }

  function onEvent(event) {
    switch (event.type) {
      case Event.SERVICE_MESSAGE:
        received(event.thread, event.message);
        break;
      case Event.SERVICE_THREAD:
        putThread(event.thread);
        break;
      case Event.SERVICE_TYPING:
        typing(event);
        break;
      default:
        break;
    }
  }

  /** The room socket is open (again): what it missed while away is read again. */
  function connected() {
    loadList();
    if (state.open?.loaded) loadThread();
  }

  // --- the first-response figure ---------------------------------------------------------------------------

  let figureTimer = null;

  async function loadFigure() {
    try {
      const query = new URLSearchParams({ room_id: roomId, limit: "1" });
      const answer = await api(`${shop}/service/shows?${query}`, { session });
      renderFigure((answer.shows || [])[0] || null);
    } catch {
      // the next refresh tries again
    }
  }

  function figureSoon() {
    clearTimeout(figureTimer);
    figureTimer = setTimeout(loadFigure, 600);
  }

  function renderFigure(show) {
    const title = $("#inbox-figure-title");
    const numbers = $("#inbox-figure-numbers");
    if (!show) {
      text(title, "First response");
      text(numbers, "Counted from your next show.");
      return;
    }
    text(title, show.ended_at ? "First response, last show" : "First response, this show");
    const times = show.first_response_ms || {};
    numbers.replaceChildren(
      figure("median", duration(times.median), "median"),
      figure("p90", duration(times.p90), "p90"),
      figure("questions", show.questions, show.questions === 1 ? "question" : "questions"),
      figure("answered", show.answered, "answered"),
      figure("waiting", show.waiting, "waiting"),
    );
  }

  function figure(name, value, label) {
    return h("span", { dataset: { figure: name } }, h("b", {}, String(value ?? 0)), ` ${label}`);
  }

  // --- the start -------------------------------------------------------------------------------------------

  function showError(error) {
    const node = $("#inbox-error");
    node.hidden = !error;
    text(node, error ? `Messages: ${sentence(error.message)}` : "");
  }

  async function loadStaff() {
    if (role !== "admin") return; // the staff list is the admins' (server/access/routes.py)
    try {
      const staff = await api(`${shop}/staff`, { session });
      state.staff = Array.isArray(staff) ? staff : staff.staff || [];
      if (state.open) renderAssign(state.open.thread);
    } catch {
      state.staff = null; // "Me" and "Nobody" still work
    }
  }

  startReplies({ session, merchantId, toasts });
  renderCounts();
  renderThread();
  loadStaff();
  loadList();
  loadFigure();
  setInterval(loadList, LIST_REFRESH_MS);
  setInterval(loadFigure, FIGURE_REFRESH_MS);
  return { event: onEvent, connected };
}

/** Messages by id, oldest first; a later copy of one (its public answer decided) replaces the earlier. */
function mergeMessages(known, more) {
  const byId = new Map(known.map((message) => [message.id, message]));
  for (const message of more) byId.set(message.id, message);
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

function newest(messages, side) {
  for (let index = messages.length - 1; index >= 0; index--) if (messages[index].side === side) return messages[index];
  return null;
}

function newestBuyer(messages) {
  return newest(messages || [], "buyer");
}

/** "14:05" today, "3 Mar" before (with the time when `withTime`). */
function when(ms, withTime = false) {
  if (!ms) return "";
  const date = new Date(ms);
  const time = date.toLocaleTimeString([], { timeStyle: "short" });
  if (date.toDateString() === new Date().toDateString()) return time;
  const day = date.toLocaleDateString([], { month: "short", day: "numeric" });
  return withTime ? `${day}, ${time}` : day;
}

function full(ms) {
  return ms ? new Date(ms).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "";
}

function iso(ms) {
  return ms ? new Date(ms).toISOString() : "";
}

/** A response time in words: "45 s", "2 min 5 s", "1 h 4 min"; "—" with none yet. */
function duration(ms) {
  if (typeof ms !== "number") return "—";
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return seconds % 60 ? `${minutes} min ${seconds % 60} s` : `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function badgeText(count) {
  return count > 99 ? "99+" : String(count);
}

/** An order's number as the buyer sees it (room.js): "#3F9A1C". */
