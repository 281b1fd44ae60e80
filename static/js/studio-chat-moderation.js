// Chat moderation by tap in the studio: a chat line's actions (delete, mute, ban) open from a tap on the line or on
// its always-visible ⋯ button, and from the keyboard (Enter on ⋯ opens and focuses them, Escape closes): usable on a
// touch screen, never only on hover. One line's actions are open at a time.

import { h } from "./ui.js";

let lines = 0; // ids for the lines' action groups
let opened = null; // the <li> whose actions are open

/** Give a chat line (`item`, from chat-view.js) its actions (`actions`, a div of buttons) and a ⋯ button. */
export function moderatable(item, actions, name) {
  const id = `mod-actions-${++lines}`;
  actions.id = id;
  actions.setAttribute("role", "group");
  actions.setAttribute("aria-label", `Moderate ${name}`);
  const toggle = h(
    "button.mod-toggle",
    { type: "button", "aria-expanded": "false", "aria-controls": id, "aria-label": `Moderate ${name}'s message` },
    h("span", { "aria-hidden": "true" }, "⋯"),
  );
  item.append(toggle, actions);
}

/** Open and close the lines' actions of the chat list `list` on taps, clicks and keys. */
export function moderateByTap(list) {
  list.addEventListener("click", (click) => {
    const item = click.target.closest("li");
    if (!item || !list.contains(item) || !item.querySelector(".mod-toggle")) return;
    if (click.target.closest(".mod-actions")) {
      if (click.target.closest("button")) close(); // an action was taken
      return;
    }
    if (click.target.closest(".mod-toggle")) {
      toggle(item, { keyboard: click.detail === 0 });
      return;
    }
    if (!getSelection()?.isCollapsed) return; // selecting a message's text, not tapping it
    toggle(item, { keyboard: false });
  });
  list.addEventListener("keydown", (key) => {
    if (key.key !== "Escape" || !opened) return;
    const item = opened;
    close();
    item.querySelector(".mod-toggle")?.focus();
  });
  document.addEventListener("click", (click) => {
    if (opened && !opened.contains(click.target)) close();
  });
}

function toggle(item, { keyboard }) {
  if (opened === item) {
    close();
    return;
  }
  close();
  opened = item;
  item.dataset.open = "true";
  item.querySelector(".mod-toggle").setAttribute("aria-expanded", "true");
  if (keyboard) item.querySelector(".mod-actions button")?.focus();
}

function close() {
  if (!opened) return;
  delete opened.dataset.open;
  opened.querySelector(".mod-toggle")?.setAttribute("aria-expanded", "false");
  opened = null;
}
