// The shop's canned replies in the studio's Messages panel (docs/customer-service.md): list, add, edit and remove,
// with the variables a reply may use ({buyer_name} …) inserted at the cursor. Picking one in a thread is
// studio-inbox.js's.

import { api } from "./api.js";
import { $, $$, h, sentence, text, toast } from "./ui.js";

/** Show and manage the canned replies of `merchantId` (any of its staff). */
export function startReplies({ session, merchantId, toasts }) {
  const base = `/api/merchants/${encodeURIComponent(merchantId)}/service/replies`;
  const call = (path, options = {}) => api(base + path, { session, ...options });
  const state = { replies: [], editing: null, busy: false, loaded: false };
  const form = $("#reply-form");
  const title = $("#reply-title");
  const body = $("#reply-text");

  async function load() {
    try {
      const answer = await call("");
      state.replies = Array.isArray(answer) ? answer : answer.replies || [];
      state.loaded = true;
      render();
    } catch (error) {
      showError(error);
    }
  }

  function render() {
    $("#replies-empty").hidden = state.replies.length > 0;
    $("#replies").replaceChildren(
      ...state.replies.map((reply) =>
        h(
          "li.ref-item.reply-item",
          { dataset: { replyId: String(reply.id) } },
          h("div.ref-item-text", {}, h("strong", {}, reply.title), h("span", {}, reply.text)),
          h(
            "div.ref-actions",
            {},
            h("button.button-secondary.small", { type: "button", on: { click: () => edit(reply) } }, "Edit"),
            h("button.button-secondary.small", { type: "button", on: { click: () => remove(reply) } }, "Remove"),
          ),
        ),
      ),
    );
  }

  function edit(reply) {
    state.editing = reply;
    title.value = reply.title;
    body.value = reply.text;
    text($("#reply-save"), "Save reply");
    $("#reply-cancel").hidden = false;
    $("#reply-error").hidden = true;
    title.focus();
  }

  function stopEditing() {
    state.editing = null;
    form.reset();
    text($("#reply-save"), "Add reply");
    $("#reply-cancel").hidden = true;
    $("#reply-error").hidden = true;
  }

  $("#reply-cancel").addEventListener("click", stopEditing);

  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    if (state.busy) return;
    state.busy = true;
    const button = $("#reply-save");
    button.disabled = true;
    $("#reply-error").hidden = true;
    const editing = state.editing;
    try {
      const saved = await call(editing ? `/${encodeURIComponent(editing.id)}` : "", {
        method: editing ? "PUT" : "POST",
        body: { title: title.value, text: body.value },
      });
      toast(toasts, editing ? "Canned reply saved" : "Canned reply added", { kind: "ok" });
      stopEditing();
      if (saved && saved.id !== undefined) {
        state.replies = [...state.replies.filter((reply) => reply.id !== saved.id), saved];
        render();
      }
      load();
    } catch (error) {
      showError(error);
    } finally {
      state.busy = false;
      button.disabled = false;
    }
  });

  async function remove(reply) {
    try {
      await call(`/${encodeURIComponent(reply.id)}`, { method: "DELETE" });
      if (state.editing?.id === reply.id) stopEditing();
      state.replies = state.replies.filter((item) => item.id !== reply.id);
      render();
      toast(toasts, `Removed “${reply.title}”`, { kind: "ok" });
    } catch (error) {
      toast(toasts, `Not removed: ${sentence(error.message)}`, { kind: "error" });
    }
  }

  for (const button of $$("#inbox-variables [data-variable]")) {
    button.addEventListener("click", () => {
      const start = body.selectionStart ?? body.value.length;
      body.setRangeText(button.dataset.variable, start, body.selectionEnd ?? start, "end");
      body.focus();
    });
  }

  function showError(error) {
    text($("#reply-error"), sentence(error.message || "That didn't work"));
    $("#reply-error").hidden = false;
  }

  // Read when first opened: most visits never manage them.
  $("#inbox-manage").addEventListener("toggle", () => {
    if ($("#inbox-manage").open && !state.loaded) load();
  });
  return { reload: load };
}
