// Assigning: a thread's links as removable chips, a contact picker (GET /v1/contacts?q=), and
// the API's suggestions as one-click links.
import { api, paths } from "./api.js";
import { h, clear, uid } from "./dom.js";
import { t } from "./i18n.js";
import { say, fail, busy } from "./ui.js";
import { openDialog } from "./dialog.js";

const names = new Map();

export async function contactName(id) {
  if (!names.has(id)) {
    names.set(id, api.get(paths.contact(id)).then((c) => c.name || (c.emails || [])[0] || id).catch(() => id));
  }
  return names.get(id);
}

export async function link(threadId, contactId) {
  await api.post(`${paths.thread(threadId)}/links`, { contact_id: contactId });
}

export async function linkBar(thread, messages, rerender) {
  const seen = new Map();
  for (const m of messages) for (const l of m.links || []) if (!seen.has(l.contact_id)) seen.set(l.contact_id, l);
  const chips = h("ul", { class: "chips links", "aria-label": t("linked_contacts") });
  for (const l of seen.values()) {
    const name = await contactName(l.contact_id);
    chips.append(h("li", { class: "chip", "data-contact": l.contact_id },
      h("a", { href: `#/contacts/${encodeURIComponent(l.contact_id)}`, text: name }),
      h("span", { class: "muted", text: ` ${t(`kind_${l.kind}`)}` }),
      h("button", {
        type: "button", class: "icon", "aria-label": t("unlink_named", { name }),
        onclick: (ev) => busy(ev.currentTarget, async () => {
          await api.del(`${paths.thread(thread.id)}/links/${paths.enc(l.contact_id)}`);
          say(t("unlinked", { name }));
          await rerender();
        }),
        text: "×",
      })));
  }
  const sugg = h("div", { class: "suggestions", "aria-live": "polite" });
  const bar = h("section", { class: "linkbar", "aria-label": t("links") },
    h("span", { class: "label", text: t("linked_to") }),
    seen.size ? chips : h("span", { class: "muted", text: t("not_linked") }),
    h("button", {
      type: "button", id: "link-thread",
      onclick: () => pickContact(async (c) => { await link(thread.id, c.id); say(t("linked", { name: c.name })); await rerender(); }),
      text: t("link_contact"),
    }),
    sugg);
  const newest = messages[messages.length - 1];
  if (newest) {
    api.get(`${paths.message(newest.id)}/suggestions`).then(({ items }) => {
      const fresh = items.filter((s) => !seen.has(s.contact_id));
      if (!fresh.length) return;
      sugg.append(h("span", { class: "muted", text: t("suggested") }), ...fresh.map((s) => suggestionButton(thread.id, s, rerender)));
    }).catch(() => {});
  }
  return bar;
}

export function suggestionButton(threadId, s, after) {
  return h("button", {
    type: "button", class: "suggestion", "data-suggestion": s.contact_id,
    title: (s.reasons || []).join(", "),
    onclick: (ev) => busy(ev.currentTarget, async () => {
      await link(threadId, s.contact_id);
      say(t("linked", { name: s.name }));
      await after();
    }),
    text: t("link_suggested", { name: s.name, kind: t(`kind_${s.kind}`) }),
  });
}

export function pickContact(onPick) {
  const qId = uid("q");
  const kindId = uid("kind");
  const listId = uid("results");
  const q = h("input", { id: qId, type: "search", autocomplete: "off", "aria-controls": listId, "aria-describedby": `${qId}-hint` });
  const kind = h("select", { id: kindId },
    h("option", { value: "", text: t("kind_any") }),
    h("option", { value: "customer", text: t("kind_customer") }),
    h("option", { value: "intermediary", text: t("kind_intermediary") }));
  const results = h("ul", { id: listId, class: "results", "aria-label": t("results") });
  const info = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  let dlg = null;
  let seq = 0;
  const search = async () => {
    const term = q.value.trim();
    const mine = ++seq;
    clear(results);
    if (!term) { info.textContent = t("type_to_search"); return; }
    try {
      const { items } = await api.get("/v1/contacts", { q: term.slice(0, 100), kind: kind.value, limit: 10 });
      if (mine !== seq) return;
      info.textContent = items.length ? t("n_results", { n: items.length }) : t("no_results");
      for (const c of items) {
        results.append(h("li", {}, h("button", {
          type: "button", class: "result", "data-contact": c.id,
          onclick: async () => { try { await onPick(c); dlg.close(); } catch (e) { fail(e); } },
        }, h("strong", { text: c.name || c.id }), " ", h("span", { class: "muted", text: `${t(`kind_${c.kind}`)} · ${(c.emails || []).join(", ")}` }))));
      }
    } catch (e) { if (mine === seq) { info.textContent = ""; fail(e); } }
  };
  let timer = null;
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 200); });
  q.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown") { ev.preventDefault(); results.querySelector("button")?.focus(); }
    if (ev.key === "Enter") { ev.preventDefault(); clearTimeout(timer); search(); }
  });
  results.addEventListener("keydown", (ev) => {
    const buttons = [...results.querySelectorAll("button")];
    const i = buttons.indexOf(document.activeElement);
    if (ev.key === "ArrowDown" && i < buttons.length - 1) { ev.preventDefault(); buttons[i + 1].focus(); }
    if (ev.key === "ArrowUp") { ev.preventDefault(); (i > 0 ? buttons[i - 1] : q).focus(); }
  });
  kind.addEventListener("change", search);
  info.textContent = t("type_to_search");
  dlg = openDialog({
    title: t("pick_contact"),
    body: h("div", { class: "form picker" },
      h("label", { for: qId, text: t("search_contacts") }), q,
      h("span", { id: `${qId}-hint`, class: "sr-only", text: t("picker_hint") }),
      h("label", { for: kindId, text: t("kind") }), kind,
      info, results),
    actions: [{ label: t("cancel") }],
  });
  q.focus();
  return dlg;
}
