// The sandbox messenger's inbox (development only): what it "sent" to one email address or phone number, newest
// first, read again every 2 s. Messages are shown as text; a 6-digit code in one stands out.

import { api, destinationOf } from "./api.js";
import { $, h, sentence, text } from "./ui.js";

const REFRESH_MS = 2000;
const inbox = { query: "", timer: null, shown: "" };

/** Show the inbox of `destination` ({email} or {phone}) and keep it current. */
function open(destination) {
  inbox.query = new URLSearchParams(destination).toString();
  inbox.shown = "";
  history.replaceState(null, "", `${location.pathname}?${inbox.query}`); // a reload shows the same inbox
  $("#messages").replaceChildren();
  text($("#inbox-address"), Object.values(destination)[0]);
  $("#inbox-box").hidden = false;
  load();
}

async function load() {
  clearTimeout(inbox.timer);
  const query = inbox.query;
  try {
    const box = await api(`/api/sandbox/inbox?${query}`);
    if (query !== inbox.query) return;
    render(box);
    $("#inbox-error").hidden = true;
  } catch (error) {
    if (query !== inbox.query) return;
    text($("#inbox-error"), sentence(error.message));
    $("#inbox-error").hidden = false;
  }
  inbox.timer = setTimeout(load, REFRESH_MS);
}

function render(box) {
  text($("#inbox-address"), box.to);
  const shown = JSON.stringify(box.messages);
  if (shown === inbox.shown) return; // unchanged: keep what someone may be selecting
  inbox.shown = shown;
  $("#messages").replaceChildren(
    ...box.messages.map((message) =>
      h(
        "li.message",
        {},
        h("time", { dateTime: new Date(message.sent_at).toISOString() }, new Date(message.sent_at).toLocaleTimeString()),
        h("p.message-text", {}, ...withCodes(message.text)),
      ),
    ),
  );
}

/** A message's text in parts, its 6-digit codes as <strong class="code"> (all as text nodes). */
function withCodes(value) {
  return value.split(/\b(\d{6})\b/).map((part, index) => (index % 2 ? h("strong.code", {}, part) : part));
}

$("#inbox-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  open(destinationOf($("#inbox-to").value));
});

const params = new URLSearchParams(location.search);
const start = params.get("email") || params.get("phone");
if (start) {
  $("#inbox-to").value = start;
  open(destinationOf(start));
}
