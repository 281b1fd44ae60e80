// The pages' words in the reader's language. Each translated page keeps its strings in one module per language
// (strings/room.en.js, strings/room.zh.js: the same keys) and binds them with translator(); the page picks the
// language once at start from the browser's (navigator.languages) with useBrowserLanguage(). A page that never
// does stays in English, and so do the modules it shares with the room (chat-view.js, sign-in.js, ...).
//
// A string may name variables, "{count} entered", filled from t(key, {count: 3}); a string that changes with a
// number is an object of plural forms, {one: "{count} winner", other: "{count} winners"}, picked by the
// language's plural rules (Intl.PluralRules) for vars.count. A key missing in a language falls back to English.

export const LANGUAGES = Object.freeze({ en: "en", zh: "zh-CN" }); // shipped: our name -> <html lang>
export const FALLBACK = "en";

let current = FALLBACK;
const pluralRules = new Map();

/** The first of the browser's languages that is shipped ("zh-CN", "zh-Hans", "zh-TW" -> "zh"); English else. */
export function pickLanguage(preferred = globalThis.navigator?.languages ?? []) {
  for (const tag of preferred || []) {
    const primary = String(tag).toLowerCase().split(/[-_]/)[0];
    if (Object.hasOwn(LANGUAGES, primary)) return primary;
  }
  return FALLBACK;
}

/** Use `language` from now on, and say so on <html lang> (screen readers, fonts, hyphenation). */
export function setLanguage(language) {
  current = Object.hasOwn(LANGUAGES, language) ? language : FALLBACK;
  if (globalThis.document) document.documentElement.lang = LANGUAGES[current];
  return current;
}

/** The browser's language, if shipped (else English), for the rest of this page. */
export function useBrowserLanguage() {
  return setLanguage(pickLanguage());
}

export function language() {
  return current;
}

function pluralForm(count) {
  let rules = pluralRules.get(current);
  if (!rules) {
    rules = new Intl.PluralRules(LANGUAGES[current]);
    pluralRules.set(current, rules);
  }
  return rules.select(Number(count));
}

const numberFormats = new Map();

/** A variable's text: a number in the language's digits grouping ("1,200"), anything else as a string. */
function shown(value) {
  if (typeof value !== "number") return String(value);
  let format = numberFormats.get(current);
  if (!format) {
    format = new Intl.NumberFormat(LANGUAGES[current]);
    numberFormats.set(current, format);
  }
  return format.format(value);
}

/** "{name} joined" + {name: "Ana"} -> "Ana joined"; an unknown {variable} is left as it is. */
export function fill(template, vars = {}) {
  return template.replace(/\{(\w+)\}/g, (whole, name) => (Object.hasOwn(vars, name) ? shown(vars[name]) : whole));
}

/** A page's t(key, vars): `catalogs` maps a language to its strings ({en: {...}, zh: {...}}). */
export function translator(catalogs) {
  return function t(key, vars = {}) {
    let entry = catalogs[current]?.[key];
    if (entry === undefined) entry = catalogs[FALLBACK]?.[key];
    if (entry === undefined) return key;
    if (typeof entry === "object") {
      entry = entry[pluralForm(vars.count)] ?? entry.other;
    }
    return fill(entry, vars);
  };
}

const ATTRIBUTES = ["placeholder", "aria-label", "title", "alt"];

/**
 * Fill the static text of a page in the current language: an element's text from data-i18n="key", and its
 * placeholder, aria-label, title or alt from data-i18n-placeholder="key" (and so on). An element whose text is
 * translated has no element children (an icon's label is a <span> of its own).
 */
export function translatePage(t, root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const name of ATTRIBUTES) {
    for (const node of root.querySelectorAll(`[data-i18n-${name}]`)) {
      node.setAttribute(name, t(node.getAttribute(`data-i18n-${name}`)));
    }
  }
}
