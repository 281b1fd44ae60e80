// Chat lines as both pages show them: role badges, and every message built as text, never as HTML.

import { t } from "./strings/room.js";
import { h } from "./ui.js";

const ROLE_BADGES = Object.freeze({ host: "badge.host", admin: "badge.shop", moderator: "badge.mod" }); // their strings

/** The badge of a staff role ("Host", "Shop", "Mod"); null for viewers. */
export function roleBadge(role) {
  return Object.hasOwn(ROLE_BADGES, role) ? t(ROLE_BADGES[role]) : null;
}

/** One message: <li data-id data-user> with its badge (staff get class "staff"), its name and its text; a staff
 *  member's public answer to a buyer's question (`question`, the buyer unnamed) quotes it first: "Q: …". */
export function chatLine(message, { mine = false } = {}) {
  const badge = roleBadge(message.role);
  const question = typeof message.question === "string" ? message.question : null; // a public answer's
  const item = h(
    "li",
    { dataset: { id: message.id, user: message.user_id } },
    question ? h("span.question", {}, t("chat.question", { question })) : null,
    badge ? h("span.badge", {}, badge) : null,
    h("span.name", {}, message.name),
    h("span.text", {}, message.text),
  );
  if (badge) item.classList.add("staff");
  if (mine) item.classList.add("mine");
  if (question) item.classList.add("answer");
  return item;
}

/** Add a line at the end, dropping the oldest beyond `limit`. */
export function appendLine(list, item, limit) {
  list.append(item);
  while (list.children.length > limit) list.firstElementChild.remove();
}

/** Take away the line of a deleted message. */
export function removeLine(list, messageId) {
  list.querySelector(`li[data-id="${CSS.escape(messageId)}"]`)?.remove();
}

/** Show the newest line: always when `force`, else only when the reader is already near the bottom. */
export function scrollToEnd(list, force) {
  if (force || list.scrollHeight - list.scrollTop - list.clientHeight < 80) list.scrollTop = list.scrollHeight;
}
