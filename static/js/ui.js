// Small DOM helpers shared by the pages. Data always goes in as text (textContent), never as HTML.

/** Build an element: h("p.note", {dataset: {id: 1}}, "text", child) — strings become text nodes. */
export function h(tag, props = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const node = document.createElement(name || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [kind, handler] of Object.entries(value)) node.addEventListener(kind, handler);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** Set an element's text (never HTML). */
export function text(node, value) {
  node.textContent = value === undefined || value === null ? "" : String(value);
  return node;
}

/** An image URL safe to use in `src`: same-origin paths, http(s) and data:image only. */
export function safeImage(url) {
  if (typeof url !== "string" || !url) return "/img/placeholder.svg";
  try {
    const parsed = new URL(url, location.origin);
    if (parsed.protocol === "http:" || parsed.protocol === "https:") return parsed.href;
    if (parsed.protocol === "data:" && url.startsWith("data:image/")) return url;
  } catch {
    // fall through
  }
  return "/img/placeholder.svg";
}

/** The same <img> (built as `tag`) for the same picture from one render to the next: no reload, no flicker. `images`
 *  is the caller's Map of picture URL -> node. */
export function keptImage(images, url, tag) {
  const src = safeImage(url);
  let image = images.get(src);
  if (!image) {
    image = h(tag, { src, alt: "" });
    images.set(src, image);
  }
  return image;
}

const moneyFormats = new Map();

function moneyFormat(currency) {
  const code = (currency || "USD").toUpperCase();
  let format = moneyFormats.get(code);
  if (!format) {
    try {
      const intl = new Intl.NumberFormat(undefined, { style: "currency", currency: code });
      format = { intl, digits: intl.resolvedOptions().maximumFractionDigits };
    } catch {
      format = { intl: { format: (value) => `${value.toFixed(2)} ${code}` }, digits: 2 };
    }
    moneyFormats.set(code, format);
  }
  return format;
}

/** Minor units to money: 3900 USD -> "$39.00" (JPY has no minor unit: 3900 -> "¥3,900"). */
/** The order number buyers and staff see: the first six characters of the order id's last part, upper-cased (the
 *  server fills a canned reply's {order_number} the same way: server/service/rules.py). */
export function orderNumber(orderId) {
  return String(orderId || "")
    .split(".")
    .pop()
    .slice(0, 6)
    .toUpperCase();
}

export function money(minor, currency = "USD") {
  const { intl, digits } = moneyFormat(currency);
  return intl.format((Number(minor) || 0) / 10 ** digits);
}

/** The number of minor units in one major unit of a currency (100 for USD, 1 for JPY). */
export function minorPerUnit(currency = "USD") {
  return 10 ** moneyFormat(currency).digits;
}

/** "4:05", "1:02:03" for a number of milliseconds (never negative). */
export function clock(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

/** "1 winner", "3 winners", "1,200 buyers". */
export function plural(value, noun) {
  const number = Number(value) || 0;
  return `${new Intl.NumberFormat().format(number)} ${noun}${number === 1 ? "" : "s"}`;
}

/** A moment (ms since the epoch) as this browser's time of day: "8:45 PM". */
export function timeOfDay(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
}

/** A moment as this browser's date and time of day: "Dec 3, 8:45 PM". */
export function dayAndTime(ms) {
  return new Date(ms).toLocaleString([], { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
}

/** 1234 -> "1.2K". */
export function compact(value) {
  return new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 }).format(value || 0);
}

/** Show a short notice in a toast stack; it leaves by itself. */
export function toast(stack, message, { kind = "info", ms = 3500 } = {}) {
  const node = h(`div.toast.toast-${kind}`, { role: "status" }, message);
  stack.append(node);
  while (stack.children.length > 3) stack.firstElementChild.remove();
  setTimeout(() => {
    node.classList.add("leaving");
    setTimeout(() => node.remove(), 400);
  }, ms);
  return node;
}

/** Copy text to the clipboard (with a fallback for pages where the Clipboard API is unavailable). */
export async function copyText(value) {
  try {
    await navigator.clipboard.writeText(value);
    return true;
  } catch {
    const area = h("textarea.offscreen", { readOnly: true }, value);
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }
}

/** A server message as a sentence: "that code isn't right" -> "That code isn't right." */
export function sentence(message) {
  const value = String(message || "").trim();
  if (!value) return "";
  return value.charAt(0).toUpperCase() + value.slice(1) + (/[.!?…]$/.test(value) ? "" : ".");
}
