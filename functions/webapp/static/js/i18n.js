// Strings live in ../i18n/<lang>.json, one file per language. The language comes from the
// user's choice (localStorage: not a secret) or navigator.language.
const SUPPORTED = ["en", "de"];
let strings = {};
let current = "en";
const listeners = [];

export function lang() { return current; }

export function pick() {
  const saved = localStorage.getItem("mailsync.lang");
  if (SUPPORTED.includes(saved)) return saved;
  const nav = (navigator.language || "en").slice(0, 2).toLowerCase();
  return SUPPORTED.includes(nav) ? nav : "en";
}

export async function load(code, remember = false) {
  const res = await fetch(new URL(`../i18n/${code}.json`, import.meta.url));
  strings = await res.json();
  current = code;
  if (remember) localStorage.setItem("mailsync.lang", code);
  document.documentElement.lang = code;
  applyStatic(document);
  for (const fn of listeners) fn(code);
}

export function onChange(fn) { listeners.push(fn); }

export function t(key, vars = {}) {
  let s = strings[key];
  if (s === undefined) s = key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] !== undefined ? String(vars[k]) : `{${k}}`));
}

export function applyStatic(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
}
