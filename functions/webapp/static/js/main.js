// Boot and routing (#/mail, #/thread/<id>, #/unassigned, #/contacts[/<id>], #/accounts, #/signin).
import { readFragment, session, setUnauthorizedHandler } from "./api.js";
import { load, pick, lang, onChange } from "./i18n.js";
import { clear } from "./dom.js";
import { stopTimers } from "./ui.js";
import { renderSignin } from "./signin.js";
import { renderAccounts } from "./accounts.js";
import { renderMail, renderThreadPage } from "./mail.js";
import { renderUnassigned } from "./unassigned.js";
import { renderContacts } from "./contacts.js";

const main = document.getElementById("main");

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = hash.split("/");
  return { name: name || "mail", arg: rest.map(decodeURIComponent).join("/") };
}

async function render() {
  stopTimers();
  const r = route();
  const signedIn = Boolean(session.token);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn || session.embedded;
  document.getElementById("who").textContent = signedIn && session.user ? session.user : "";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.route === r.name || (r.name === "thread" && a.dataset.route === "mail")) {
      a.setAttribute("aria-current", "page");
    } else a.removeAttribute("aria-current");
  }
  clear(main);
  if (!signedIn || r.name === "signin") return renderSignin(main);
  switch (r.name) {
    case "accounts": return renderAccounts(main);
    case "unassigned": return renderUnassigned(main);
    case "contacts": return renderContacts(main, r.arg);
    case "thread": return renderThreadPage(main, r.arg);
    default: return renderMail(main);
  }
}

async function boot() {
  readFragment();
  // Back from an OAuth flow: /app/?account_id=... shows the accounts.
  const q = new URLSearchParams(location.search);
  if (q.get("account_id") || q.get("error")) {
    history.replaceState(null, "", location.pathname + "#/accounts");
  }
  await load(pick());
  const select = document.getElementById("lang");
  select.value = lang();
  select.addEventListener("change", async () => { await load(select.value, true); render(); });
  onChange((code) => { select.value = code; });
  document.getElementById("signout").addEventListener("click", () => {
    session.clear();
    location.hash = "#/signin";
    render();
  });
  setUnauthorizedHandler(() => {
    session.clear();
    if (route().name !== "signin") { location.hash = "#/signin"; }
  });
  window.addEventListener("hashchange", render);
  render();
}

boot();
