// The unassigned list: mail linked to no contact, with the API's best suggestion, a picker
// per row and a way to open the thread.
import { api } from "./api.js";
import { h, clear, person, fmtDate } from "./dom.js";
import { t, lang } from "./i18n.js";
import { say, fail, focusMain, every } from "./ui.js";
import { link, pickContact, suggestionButton } from "./links.js";

export async function renderUnassigned(main) {
  const heading = h("h1", { id: "unassigned-h", text: t("unassigned_title") });
  const list = h("ul", { class: "rows unassigned", "aria-labelledby": "unassigned-h" });
  const more = h("div", {});
  main.append(h("section", { class: "page" }, heading, h("p", { class: "muted", text: t("unassigned_hint") }), list, more));
  focusMain(heading);
  let items = [];
  let cursor = null;
  const load = async (reset) => {
    try {
      const page = await api.get("/v1/messages", {
        unassigned: "true", with_suggestions: "true",
        limit: reset ? Math.max(25, items.length) : 25, cursor: reset ? null : cursor,
      });
      items = reset ? page.items : [...items, ...page.items];
      cursor = page.next_cursor;
      draw();
    } catch (e) { fail(e); }
  };
  const draw = () => {
    const focusedId = document.activeElement?.closest?.("[data-message]")?.dataset.message;
    clear(list);
    clear(more);
    if (!items.length) list.append(h("li", { class: "empty", text: t("unassigned_none") }));
    for (const m of items) {
      const done = async () => { await load(true); };
      list.append(h("li", { class: "row-item", "data-message": m.id },
        h("div", { class: "row-main" },
          h("a", { href: `#/thread/${encodeURIComponent(m.thread_id)}` },
            h("strong", { text: m.subject || t("no_subject") })),
          h("div", { class: "muted", text: `${person((m.from || [])[0])} · ${fmtDate(m.date, lang())}` }),
          h("div", { class: "snippet", text: m.snippet || "" })),
        h("div", { class: "row-actions" },
          m.suggestion ? suggestionButton(m.thread_id, m.suggestion, done) : null,
          h("button", {
            type: "button", class: "link-btn", "aria-label": t("link_named", { subject: m.subject || t("no_subject") }),
            onclick: () => pickContact(async (c) => { await link(m.thread_id, c.id); say(t("linked", { name: c.name })); await done(); }),
            text: t("link_contact"),
          }))));
    }
    if (cursor) more.append(h("button", { type: "button", class: "more", onclick: () => load(false), text: t("load_more") }));
    if (focusedId) list.querySelector(`[data-message="${CSS.escape(focusedId)}"] a`)?.focus();
  };
  await load(true);
  every(15000, () => { if (!document.hidden && !document.querySelector("dialog[open]")) load(true); });
}
