// One thread, oldest first: HTML bodies in a sandboxed iframe (no scripts; remote images only
// after the reader asks, through the API's image proxy), attachments, read/unread, move,
// delete, reply, and the thread's links to contacts.
import { api, paths } from "./api.js";
import { h, clear, person, people, fmtDateTime, fmtSize, clipIcon } from "./dom.js";
import { t, lang } from "./i18n.js";
import { say, fail, busy, focusMain } from "./ui.js";
import { confirmDialog } from "./dialog.js";
import { openCompose } from "./compose.js";
import { linkBar } from "./links.js";

// No allow-scripts, ever: the mail cannot run code. allow-same-origin (without scripts) lets
// us size the frame to its content; popups open links in a new, unsandboxed tab.
export const SANDBOX = "allow-same-origin allow-popups allow-popups-to-escape-sandbox";

export async function renderThread(pane, threadId, opts = {}) {
  clear(pane);
  let thread;
  try { thread = await api.get(paths.thread(threadId)); } catch (e) { fail(e); return; }
  const messages = [...thread.messages].sort((a, b) => (a.date || "").localeCompare(b.date || ""));
  const heading = h("h2", { class: "thread-subject", id: "thread-subject", text: thread.subject || t("no_subject") });
  const unread = messages.some((m) => m.unread);
  const own = (opts.accounts || []).some((a) => a.id === thread.account_id);
  const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": t("thread_actions") });
  toolbar.append(h("button", { type: "button", class: "back", onclick: () => opts.onBack?.(), text: `← ${t("back")}` }));
  if (own) {
    toolbar.append(
      h("button", {
        type: "button", id: "toggle-read",
        onclick: (ev) => busy(ev.currentTarget, async () => {
          const now = ev.currentTarget.dataset.unread !== "true";
          await api.patch(paths.thread(threadId), { unread: now });
          say(t(now ? "marked_unread" : "marked_read"));
          opts.onChanged?.();
          await renderThread(pane, threadId, opts);
        }),
        "data-unread": String(unread),
        text: t(unread ? "mark_read" : "mark_unread"),
      }),
      moveControl(thread, opts, pane),
      h("button", {
        type: "button", class: "danger", id: "delete-thread",
        onclick: async () => {
          const ok = await confirmDialog({ title: t("delete_thread_title"), message: t("delete_thread_text", { n: messages.length }), confirm: t("delete") });
          if (!ok) return;
          try {
            for (const m of messages) await api.del(paths.message(m.id));
            say(t("deleted"));
            opts.onGone?.();
          } catch (e) { fail(e); }
        },
        text: t("delete"),
      }),
      h("button", {
        type: "button", class: "primary", id: "reply",
        onclick: () => reply(thread, messages, opts, pane),
        text: t("reply"),
      }));
  }
  const links = await linkBar(thread, messages, () => renderThread(pane, threadId, opts));
  const list = h("ol", { class: "messages", "aria-label": t("messages") });
  pane.append(h("header", { class: "thread-head" }, toolbar, heading), links, list);
  for (const m of messages) list.append(await messageView(m));
  focusMain(heading);
  if (own && unread && !opts.keepUnread) {
    // Reading marks the thread read, as in any mail client (the button undoes it).
    api.patch(paths.thread(threadId), { unread: false }).then(() => {
      const b = pane.querySelector("#toggle-read");
      if (b) { b.dataset.unread = "false"; b.textContent = t("mark_unread"); }
      opts.onChanged?.();
    }).catch(() => {});
  }
}

function moveControl(thread, opts, pane) {
  const folders = opts.folders || [];
  const current = new Set(thread.messages.map((m) => m.folder));
  const sel = h("select", { id: "move-to", "aria-label": t("move_to") },
    h("option", { value: "", text: t("move_to") }),
    folders.filter((f) => !current.has(f.name)).map((f) => h("option", { value: f.name, text: f.name })));
  sel.addEventListener("change", async () => {
    if (!sel.value) return;
    try {
      await api.patch(paths.thread(thread.id), { folder: sel.value });
      say(t("moved", { folder: sel.value }));
      opts.onGone?.();
    } catch (e) { fail(e); }
  });
  return sel;
}

function reply(thread, messages, opts, pane) {
  const last = messages[messages.length - 1];
  const acc = (opts.accounts || []).find((a) => a.id === thread.account_id);
  const mine = acc ? acc.email.toLowerCase() : "";
  const from = (last.from || []).filter((p) => p.email.toLowerCase() !== mine);
  const to = from.length ? from : last.to || [];
  const subject = /^re:/i.test(thread.subject || "") ? thread.subject : `Re: ${thread.subject || ""}`;
  openCompose({
    accounts: opts.accounts, accountId: thread.account_id, to: to.map((p) => p.email), subject, replyTo: last.id,
    onSent: async (r) => { await renderThread(pane, thread.id, { ...opts, keepUnread: true }); opts.onSent?.(r); },
  });
}

async function messageView(summary) {
  const li = h("li", { class: "message", "data-message": summary.id });
  let m;
  try { m = await api.get(paths.message(summary.id)); } catch (e) { li.append(h("p", { text: t("err_generic") })); fail(e); return li; }
  li.append(h("header", { class: "msg-head" },
    h("div", {}, h("strong", { text: person((m.from || [])[0]) }), " ", h("span", { class: "muted", text: `<${(m.from || [])[0]?.email || ""}>` })),
    h("div", { class: "muted", text: `${t("to")}: ${people(m.to)}${m.cc && m.cc.length ? ` · ${t("cc")}: ${people(m.cc)}` : ""}` }),
    h("time", { datetime: m.date, class: "muted", text: fmtDateTime(m.date, lang()) })));
  if (m.redacted && m.redacted.length) li.append(h("p", { class: "note", text: t("redacted", { what: m.redacted.join(", ") }) }));
  const body = h("div", { class: "msg-body" });
  li.append(body);
  drawBody(body, m, false);
  if (m.attachments && m.attachments.length) {
    li.append(h("ul", { class: "attachments", "aria-label": t("attachments") }, m.attachments.map((a) =>
      h("li", {}, h("button", {
        type: "button", class: "attachment",
        onclick: (ev) => busy(ev.currentTarget, () => download(m.id, a)),
        "aria-label": t("download_named", { name: a.filename || a.id }),
      }, clipIcon(), ` ${a.filename || a.id}`, h("span", { class: "muted", text: ` (${fmtSize(a.size)})` }))))));
  }
  return li;
}

function drawBody(body, m, loaded) {
  clear(body);
  if (m.html) {
    if (m.remote_images > 0 && !loaded) {
      body.append(h("div", { class: "note images-blocked", role: "group", "aria-label": t("images_blocked_label") },
        h("span", { text: t("images_blocked", { n: m.remote_images }) }), " ",
        h("button", {
          type: "button", class: "load-images",
          onclick: (ev) => busy(ev.currentTarget, async () => {
            const full = await api.get(paths.message(m.id), { images: "load" });
            drawBody(body, full, true);
            body.querySelector("iframe")?.focus();
          }),
          text: t("load_images"),
        })));
    }
    const frame = h("iframe", { sandbox: SANDBOX, title: t("mail_content", { subject: m.subject || "" }), class: "mail-frame", referrerpolicy: "no-referrer", loading: "lazy" });
    frame.srcdoc = wrap(m.html);
    frame.addEventListener("load", () => {
      try {
        const doc = frame.contentDocument;
        frame.style.height = `${Math.min(2000, Math.max(120, doc.body.scrollHeight + 32))}px`;
      } catch { /* opaque */ }
    });
    body.append(frame);
  } else {
    body.append(h("pre", { class: "text-body", text: m.text || "" }));
  }
}

function wrap(html) {
  // base target: links open in a new tab; the CSP inherited from this page allows no script,
  // no style sheets from elsewhere and only our own image route.
  return `<!doctype html><html><head><meta charset="utf-8"><base target="_blank"><meta name="referrer" content="no-referrer"></head><body>${html}</body></html>`;
}

async function download(messageId, att) {
  const blob = await api.blob(`${paths.message(messageId)}/attachments/${paths.enc(att.id)}`);
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: att.filename || "attachment" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
