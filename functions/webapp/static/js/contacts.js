// A customer's file: find a contact, then its history (threads newest first), as this user
// may see it (the API redacts what a colleague's sharing level withholds).
import { api, paths } from "./api.js";
import { h, clear, people, fmtDate } from "./dom.js";
import { t, lang } from "./i18n.js";
import { fail, focusMain } from "./ui.js";

export async function renderContacts(main, contactId) {
  if (contactId) return renderContact(main, contactId);
  const heading = h("h1", { id: "contacts-h", text: t("contacts_title") });
  const q = h("input", { id: "contact-search", type: "search", autocomplete: "off", "aria-controls": "contact-results" });
  const results = h("ul", { id: "contact-results", class: "rows", "aria-label": t("results") });
  const info = h("p", { class: "muted", role: "status", text: t("type_to_search") });
  main.append(h("section", { class: "page", "aria-labelledby": "contacts-h" }, heading,
    h("form", { role: "search", class: "form", onsubmit: (ev) => { ev.preventDefault(); search(); } },
      h("label", { for: "contact-search", text: t("search_contacts") }), q),
    info, results));
  let seq = 0;
  const search = async () => {
    const term = q.value.trim();
    const mine = ++seq;
    if (!term) { clear(results); info.textContent = t("type_to_search"); return; }
    try {
      const { items } = await api.get("/v1/contacts", { q: term.slice(0, 100), limit: 25 });
      if (mine !== seq) return;
      clear(results);
      info.textContent = items.length ? t("n_results", { n: items.length }) : t("no_results");
      for (const c of items) {
        results.append(h("li", { class: "row-item" }, h("a", { href: `#/contacts/${encodeURIComponent(c.id)}` },
          h("strong", { text: c.name || c.id })), h("span", { class: "muted", text: ` ${t(`kind_${c.kind}`)} · ${(c.emails || []).join(", ")}` })));
      }
    } catch (e) { fail(e); }
  };
  let timer = null;
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 200); });
  focusMain(heading);
  q.focus();
}

async function renderContact(main, id) {
  let c;
  try { c = await api.get(paths.contact(id)); } catch (e) { fail(e); main.append(h("p", { text: t("contact_not_found") })); return; }
  const heading = h("h1", { id: "contact-h", text: c.name || c.id });
  const list = h("ul", { class: "rows history", "aria-label": t("history") });
  const more = h("div", {});
  main.append(h("section", { class: "page", "aria-labelledby": "contact-h" },
    h("p", {}, h("a", { href: "#/contacts", text: `← ${t("contacts_title")}` })),
    heading,
    h("p", { class: "muted", text: `${t(`kind_${c.kind}`)} · ${(c.emails || []).join(", ")}` }),
    h("h2", { text: t("history") }), list, more));
  focusMain(heading);
  let items = [];
  let cursor = null;
  const load = async () => {
    try {
      const page = await api.get(`${paths.contact(id)}/threads`, { limit: 25, cursor });
      items = [...items, ...page.items].sort((a, b) => (b.last_date || "").localeCompare(a.last_date || ""));
      cursor = page.next_cursor;
      clear(list);
      clear(more);
      if (!items.length) list.append(h("li", { class: "empty", text: t("history_empty") }));
      for (const th of items) {
        list.append(h("li", { class: "row-item", "data-thread": th.id },
          h("a", { href: `#/thread/${encodeURIComponent(th.id)}` }, h("strong", { text: th.subject || t("no_subject") })),
          h("div", { class: "muted", text: `${people(th.participants)} · ${fmtDate(th.last_date, lang())} · ${t("n_messages", { n: th.message_count })}` }),
          th.snippet ? h("div", { class: "snippet", text: th.snippet }) : null));
      }
      if (cursor) more.append(h("button", { type: "button", class: "more", onclick: load, text: t("load_more") }));
    } catch (e) { fail(e); }
  };
  await load();
}
