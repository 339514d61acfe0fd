// Shared bits of the screens: status and error messages, routing state, busy buttons.
import { t } from "./i18n.js";

export function say(message) {
  const el = document.getElementById("status");
  el.textContent = "";
  setTimeout(() => { el.textContent = message; }, 20);
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { el.textContent = ""; }, 5000);
}

export function fail(err) {
  const el = document.getElementById("alert");
  const key = err && err.code ? `err_${err.code}` : "";
  const known = key && t(key) !== key ? t(key) : "";
  el.textContent = known || (err && err.message) || t("err_generic");
  clearTimeout(fail.timer);
  fail.timer = setTimeout(() => { el.textContent = ""; }, 8000);
  console.error(err);
}

export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try { return await fn(); } catch (e) { fail(e); return undefined; } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

export function focusMain(heading) {
  const el = heading || document.querySelector("#main h1");
  if (el) { el.setAttribute("tabindex", "-1"); el.focus(); }
}

// Timers of the current screen, stopped when the screen changes.
const timers = new Set();
export function every(ms, fn) {
  const id = setInterval(fn, ms);
  timers.add(id);
  return id;
}
export function stopTimers() {
  for (const id of timers) clearInterval(id);
  timers.clear();
}
