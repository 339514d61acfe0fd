// CRM → E-Mails: an account's folders with counts, a paged thread list of the chosen folder,
// and the thread view beside it (stacked at 390 px). New mail appears by polling.
import { api, paths } from "./api.js";
import { h, clear, person, fmtDate, clipIcon } from "./dom.js";
import { t, lang } from "./i18n.js";
import { fail, focusMain, every } from "./ui.js";
import { renderThread } from "./thread.js";
import { openCompose } from "./compose.js";

const state = { account: null, folder: "INBOX", accounts: [] };
const POLL_MS = Number(sessionStorage.getItem("mailsync.poll_ms")) || 5000;
const PAGE = 50;

export async function renderThreadPage(main, threadId) {
  const pane = h("section", { class: "page thread-page", "aria-label": t("thread") });
  main.append(pane);
  await renderThread(pane, threadId, { onBack: () => history.back(), accounts: await accountsOnce() });
}

async function accountsOnce() {
  try { state.accounts = (await api.get(paths.accounts(), { limit: 200 })).items; } catch (e) { fail(e); }
  return state.accounts;
}

export async function renderMail(main) {
  const heading = h("h1", { class: "sr-only", text: t("nav_mail") });
  const folderNav = h("nav", { class: "folders-nav", "aria-label": t("folders") });
  const listPane = h("section", { class: "list-pane", "aria-label": t("thread_list") });
  const threadPane = h("section", { class: "thread-pane", "aria-label": t("thread"), hidden: true });
  const layout = h("div", { class: "mail" }, folderNav, listPane, threadPane);
  main.append(heading, layout);
  focusMain(heading);
  const accounts = await accountsOnce();
  if (!accounts.length) {
    listPane.append(h("p", { class: "empty" }, t("no_accounts"), " ", h("a", { href: "#/accounts", text: t("connect_title") })));
    return;
  }
  if (!state.account || !accounts.some((a) => a.id === state.account)) state.account = accounts[0].id;
  const view = { folderNav, listPane, threadPane, layout, items: [], cursor: null, open: null };
  await drawFolders(view);
  await loadList(view, true);
  every(POLL_MS, () => { if (!document.hidden) loadList(view, true, true); });
}

async function folderUnread(accountId, folder) {
  // The folders route counts messages, not unread ones: count the unread of the newest page.
  const page = await api.get("/v1/messages", { account_id: accountId, folder, limit: 200 });
  const n = page.items.filter((m) => m.unread).length;
  return { n, more: Boolean(page.next_cursor) && n > 0 };
}

async function drawFolders(view) {
  const { folderNav } = view;
  clear(folderNav);
  const acc = state.accounts.find((a) => a.id === state.account);
  if (state.accounts.length > 1) {
    const sel = h("select", { id: "account-select", "aria-label": t("account") },
      state.accounts.map((a) => h("option", { value: a.id, selected: a.id === state.account, text: a.email })));
    sel.addEventListener("change", async () => { state.account = sel.value; state.folder = "INBOX"; await drawFolders(view); await loadList(view, true); });
    folderNav.append(sel);
  } else folderNav.append(h("p", { class: "acc-email", text: acc.email }));
  folderNav.append(h("button", {
    type: "button", class: "primary compose-btn",
    onclick: () => openCompose({ accounts: state.accounts, accountId: state.account, onSent: (r) => afterSend(view, r) }),
    text: t("compose"),
  }));
  let folders = [];
  try { folders = (await api.get(paths.folders(state.account))).items.filter((f) => f.synced); } catch (e) { fail(e); }
  view.folders = folders;
  const ul = h("ul", { class: "folder-list" });
  for (const f of folders) {
    const badge = h("span", { class: "count", "data-unread": "" });
    const a = h("a", {
      href: "#/mail", "data-folder": f.name, "aria-current": f.name === state.folder ? "true" : null,
      onclick: async (ev) => { ev.preventDefault(); state.folder = f.name; await drawFolders(view); await loadList(view, true); },
    }, h("span", { class: "fname", text: folderName(f) }), badge);
    ul.append(h("li", {}, a));
    folderUnread(state.account, f.name).then(({ n, more }) => {
      badge.textContent = n ? `${n}${more ? "+" : ""}` : "";
      badge.dataset.unread = String(n);
      a.setAttribute("aria-label", `${folderName(f)}, ${t("unread_count", { n })}`);
    }).catch(() => {});
  }
  folderNav.append(ul);
}

export function folderName(f) {
  const key = `folder_${f.role}`;
  return f.role && t(key) !== key && f.role !== "other" ? t(key) : f.name;
}

async function afterSend(view, result) {
  // Sent mail is stored at once: show the Sent folder (or the open thread) with it.
  if (view.open && view.open === result.thread_id) return openThread(view, result.thread_id);
  const sent = (view.folders || []).find((f) => f.role === "sent");
  if (sent) { state.folder = sent.name; await drawFolders(view); await loadList(view, true); }
}

function threadsOf(messages) {
  // Messages come newest first; a thread's row is its newest message in this folder.
  const rows = new Map();
  for (const m of messages) {
    const r = rows.get(m.thread_id);
    if (!r) rows.set(m.thread_id, { ...m, count: 1, anyUnread: m.unread, anyAttachment: m.has_attachments });
    else { r.count += 1; r.anyUnread ||= m.unread; r.anyAttachment ||= m.has_attachments; }
  }
  return [...rows.values()];
}

async function loadList(view, reset, quiet = false) {
  const { listPane } = view;
  let page;
  try {
    page = await api.get("/v1/messages", {
      account_id: state.account, folder: state.folder, limit: reset ? Math.max(PAGE, view.items.length || 0) : PAGE,
      cursor: reset ? null : view.cursor,
    });
  } catch (e) { if (!quiet) fail(e); return; }
  const before = document.activeElement;
  const focusedThread = before && before.closest && before.closest("[data-thread]")?.dataset.thread;
  view.items = reset ? page.items : [...view.items, ...page.items];
  view.cursor = page.next_cursor;
  clear(listPane);
  const rows = threadsOf(view.items);
  listPane.append(h("h2", { class: "list-title", text: t("folder_title", { folder: folderName((view.folders || []).find((f) => f.name === state.folder) || { name: state.folder }) }) }));
  if (!rows.length) listPane.append(h("p", { class: "empty", text: t("folder_empty") }));
  const ul = h("ul", { class: "threads", "aria-label": t("thread_list") });
  for (const r of rows) ul.append(threadRow(view, r));
  listPane.append(ul);
  if (view.cursor) {
    listPane.append(h("button", {
      type: "button", class: "more", onclick: async (ev) => { ev.currentTarget.disabled = true; await loadList(view, false); listPane.querySelector(".threads li:last-child a")?.focus(); },
      text: t("load_more"),
    }));
  }
  if (focusedThread) listPane.querySelector(`[data-thread="${CSS.escape(focusedThread)}"] a`)?.focus();
}

function threadRow(view, r) {
  const sender = person((r.from || [])[0]);
  const label = [
    r.anyUnread ? t("unread") : null, sender, r.subject || t("no_subject"),
    r.anyAttachment ? t("has_attachment") : null, fmtDate(r.date, lang()),
  ].filter(Boolean).join(", ");
  return h("li", { class: r.anyUnread ? "unread" : "", "data-thread": r.thread_id, "aria-current": view.open === r.thread_id ? "true" : null },
    h("a", {
      href: `#/thread/${encodeURIComponent(r.thread_id)}`, "aria-label": label,
      onclick: (ev) => { ev.preventDefault(); openThread(view, r.thread_id); },
    },
      h("span", { class: "sender", text: sender }),
      h("span", { class: "date", text: fmtDate(r.date, lang()) }),
      h("span", { class: "subject" },
        r.anyUnread ? h("span", { class: "dot", "aria-hidden": "true" }) : null,
        r.subject || t("no_subject"),
        r.count > 1 ? h("span", { class: "n", text: ` (${r.count})` }) : null,
        r.anyAttachment ? h("span", { class: "clip", title: t("has_attachment"), "data-attachment": "1" }, " ", clipIcon()) : null),
      h("span", { class: "snippet", text: r.snippet || "" })));
}

async function openThread(view, threadId) {
  view.open = threadId;
  view.threadPane.hidden = false;
  view.layout.classList.add("thread-open");
  for (const li of view.listPane.querySelectorAll("[data-thread]")) {
    if (li.dataset.thread === threadId) li.setAttribute("aria-current", "true"); else li.removeAttribute("aria-current");
  }
  await renderThread(view.threadPane, threadId, {
    accounts: state.accounts,
    folders: view.folders,
    onBack: () => closeThread(view),
    onChanged: () => { loadList(view, true, true); drawFolders(view); },
    onGone: () => { closeThread(view); loadList(view, true); },
    onSent: (r) => afterSend(view, r),
  });
}

function closeThread(view) {
  const id = view.open;
  view.open = null;
  view.threadPane.hidden = true;
  clear(view.threadPane);
  view.layout.classList.remove("thread-open");
  view.listPane.querySelector(`[data-thread="${CSS.escape(id || "")}"] a`)?.focus();
}
