// Settings → mailboxes: connect (detected settings shown and editable, or OAuth), the first
// load's progress, state/error/action with new credentials, settings, pause/resume, delete.
import { api, paths } from "./api.js";
import { h, clear, uid, fmtDateTime } from "./dom.js";
import { t, lang } from "./i18n.js";
import { say, fail, busy, focusMain, every } from "./ui.js";
import { openDialog, confirmDialog } from "./dialog.js";

export async function renderAccounts(main) {
  const heading = h("h1", { text: t("accounts_title") });
  const list = h("div", { class: "accounts", id: "account-list", "aria-live": "polite" });
  main.append(h("section", { class: "page", "aria-labelledby": "acc-h" }, heading, list, connectSection()));
  heading.id = "acc-h";
  focusMain(heading);
  let accounts = [];
  const refresh = async () => {
    try {
      accounts = (await api.get(paths.accounts(), { limit: 200 })).items;
      drawList(list, accounts, refresh);
    } catch (e) { fail(e); }
  };
  await refresh();
  // While a first load runs, the progress bar follows it.
  every(2000, () => { if (accounts.some((a) => a.state === "initial_sync" || a.state === "deleting")) refresh(); });
  main.addEventListener("accounts:changed", refresh);
}

function progressOf(a) {
  const s = a.sync || {};
  if (a.state !== "initial_sync") return a.state === "active" || s.last_success_at ? 100 : 0;
  if (!s.folders_total) return 0;
  return Math.min(99, Math.round((100 * (s.folders_done || 0)) / s.folders_total));
}

function drawList(list, accounts, refresh) {
  const focused = document.activeElement && document.activeElement.id;
  clear(list);
  if (!accounts.length) list.append(h("p", { class: "empty", text: t("accounts_none") }));
  for (const a of accounts) list.append(accountCard(a, refresh));
  if (focused) document.getElementById(focused)?.focus();
}

function accountCard(a, refresh) {
  const pct = progressOf(a);
  const s = a.sync || {};
  const titleId = `acc-${a.id}-title`;
  const err = a.error || (a.health && a.health.last_error);
  const action = a.health && a.health.action;
  const card = h("article", { class: `card account state-${a.state}`, "aria-labelledby": titleId, "data-account": a.id },
    h("header", { class: "row spread" },
      h("h2", { id: titleId, text: a.email }),
      h("span", { class: `badge state-${a.state}`, text: t(`state_${a.state}`) })),
    h("p", { class: "muted", text: `${t(`provider_${a.provider}`)} · ${t(`vis_${a.settings.visibility}`)}` }));
  if (a.state === "initial_sync" || pct < 100) {
    const label = t("sync_progress", { done: s.folders_done || 0, total: s.folders_total || "?", messages: s.messages || 0 });
    card.append(
      h("div", { class: "progress-label", id: `acc-${a.id}-prog`, text: label }),
      h("progress", { max: 100, value: pct, "aria-labelledby": `acc-${a.id}-prog`, "data-progress": pct }));
  } else {
    card.append(h("p", { class: "muted", text: t("sync_done", { messages: s.messages || 0, at: fmtDateTime(s.last_success_at, lang()) }) }));
  }
  if (err) {
    card.append(h("div", { class: "error-box", role: "group", "aria-label": t("account_problem") },
      h("p", {}, h("strong", { text: t(`err_${err.code}`) !== `err_${err.code}` ? t(`err_${err.code}`) : err.code }), " ", err.message || ""),
      action ? h("p", { text: t(`action_${action}`) }) : null));
  }
  if (action === "reauthenticate" || a.state === "auth_error") card.append(credentialsForm(a, refresh));
  const paused = a.state === "paused";
  card.append(h("div", { class: "row actions" },
    h("button", { type: "button", id: `acc-${a.id}-settings`, onclick: () => settingsDialog(a, refresh), text: t("account_settings") }),
    h("button", {
      type: "button", id: `acc-${a.id}-pause`,
      onclick: (ev) => busy(ev.currentTarget, async () => {
        await api.post(`${paths.account(a.id)}/${paused ? "resume" : "pause"}`);
        say(t(paused ? "resumed" : "paused"));
        await refresh();
      }),
      text: t(paused ? "resume" : "pause"),
    }),
    h("button", { type: "button", class: "danger", id: `acc-${a.id}-delete`, onclick: () => deleteAccount(a, refresh), text: t("delete_account") })));
  return card;
}

function credentialsForm(a, refresh) {
  const id = uid("cred");
  const input = h("input", { id, type: "password", autocomplete: "current-password", required: true });
  if (a.provider !== "imap") {
    return h("div", { class: "row" }, h("button", { type: "button", class: "primary", onclick: () => startOAuth(a.provider), text: t("reconnect") }));
  }
  const form = h("form", { class: "row cred" },
    h("label", { for: id, text: t("new_password") }), input,
    h("button", { type: "submit", class: "primary", text: t("save_password") }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form.querySelector("button"), async () => {
      await api.put(`${paths.account(a.id)}/credentials`, { password: input.value });
      say(t("password_saved"));
      await refresh();
    });
  });
  return form;
}

async function deleteAccount(a, refresh) {
  const s = a.sync || {};
  const ok = await confirmDialog({
    title: t("delete_account_title", { email: a.email }),
    message: t("delete_account_text", { email: a.email, messages: s.messages || 0 }),
    confirm: t("delete_account_confirm"),
  });
  if (!ok) return;
  try {
    await api.del(paths.account(a.id));
    say(t("account_deleted"));
    await refresh();
  } catch (e) { fail(e); }
}

async function settingsDialog(a, refresh) {
  let folders = [];
  try { folders = (await api.get(paths.folders(a.id))).items; } catch (e) { fail(e); }
  const st = a.settings;
  const modeName = uid("mode");
  const radio = (value) => {
    const id = uid("r");
    return h("div", { class: "check" },
      h("input", { type: "radio", name: modeName, id, value, checked: st.folder_mode === value }),
      h("label", { for: id, text: t(`folders_${value}`) }));
  };
  const checks = h("fieldset", { class: "folders" }, h("legend", { text: t("choose_folders") }),
    folders.map((f) => {
      const id = uid("f");
      const chosen = st.folder_mode === "selected" ? (st.folders || []).includes(f.name) : f.synced;
      return h("div", { class: "check" },
        h("input", { type: "checkbox", id, value: f.name, checked: chosen }),
        h("label", { for: id, text: `${f.name} (${f.messages})` }));
    }));
  const visId = uid("vis");
  const vis = h("select", { id: visId },
    ["private", "metadata", "subject", "public"].map((v) => h("option", { value: v, selected: st.visibility === v, text: t(`vis_${v}`) })));
  const sigId = uid("sig");
  const sig = h("textarea", { id: sigId, rows: 4 });
  sig.value = st.signature || "";
  const sync = () => { checks.disabled = !body.querySelector("input[value=selected]").checked; };
  const body = h("div", { class: "form" },
    h("fieldset", {}, h("legend", { text: t("folders") }), radio("all"), radio("selected")),
    checks,
    h("label", { for: visId, text: t("sharing") }), vis, h("p", { class: "hint", text: t("sharing_hint") }),
    h("label", { for: sigId, text: t("signature") }), sig);
  body.addEventListener("change", sync);
  sync();
  openDialog({
    title: t("settings_title", { email: a.email }),
    body,
    wide: true,
    actions: [
      { label: t("cancel") },
      {
        label: t("save"), primary: true,
        run: async () => {
          const mode = body.querySelector(`input[name="${modeName}"]:checked`).value;
          const chosen = [...checks.querySelectorAll("input:checked")].map((i) => i.value);
          try {
            await api.patch(`${paths.account(a.id)}/settings`, {
              folder_mode: mode,
              ...(mode === "selected" ? { folders: chosen } : {}),
              visibility: vis.value,
              signature: sig.value,
            });
            say(t("settings_saved"));
            await refresh();
            return true;
          } catch (e) { fail(e); return false; }
        },
      },
    ],
  });
}

async function startOAuth(provider) {
  try {
    const redirect = `${location.origin}${location.pathname}`;
    const { url } = await api.get(`/v1/oauth/${provider}/authorize`, { redirect_uri: redirect });
    location.assign(url);
  } catch (e) { fail(e); }
}

function field(labelKey, attrs) {
  const id = uid("in");
  return [h("label", { for: id, text: t(labelKey) }), h("input", { id, ...attrs })];
}

function serverFields(kind, detected) {
  const d = detected || {};
  const sec = uid("sec");
  return h("fieldset", { class: "server", "data-server": kind },
    h("legend", { text: t(`server_${kind}`) }),
    ...field("host", { name: "host", value: d.host || "", required: true }),
    ...field("port", { name: "port", type: "number", min: 1, max: 65535, value: d.port || "", required: true }),
    h("label", { for: sec, text: t("security") }),
    h("select", { id: sec, name: "security" }, ["ssl", "starttls", "none"].map((v) => h("option", { value: v, selected: d.security === v, text: t(`sec_${v}`) }))),
    ...field("username", { name: "username", value: d.username || "", required: true, autocomplete: "off" }));
}

function readServer(fs, password) {
  const v = (n) => fs.querySelector(`[name=${n}]`).value.trim();
  return { host: v("host"), port: Number(v("port")), security: v("security"), username: v("username"), password };
}

function connectSection() {
  const headingId = uid("connect-h");
  const [emailLabel, email] = field("email", { type: "email", name: "email", required: true, autocomplete: "email" });
  const [pwLabel, pw] = field("password", { type: "password", name: "password", required: true, autocomplete: "current-password" });
  const detectedBox = h("div", { class: "detected", "aria-live": "polite" });
  const detectBtn = h("button", { type: "submit", class: "primary", text: t("detect_settings") });
  const connectBtn = h("button", { type: "button", class: "primary", hidden: true, text: t("connect") });
  const form = h("form", { class: "card connect", "aria-labelledby": headingId },
    h("h2", { id: headingId, text: t("connect_title") }),
    h("div", { class: "form two" }, h("div", {}, emailLabel, email), h("div", {}, pwLabel, pw)),
    h("div", { class: "row" }, detectBtn, connectBtn),
    detectedBox,
    h("div", { class: "row oauth" },
      h("span", { class: "muted", text: t("or") }),
      h("button", { type: "button", class: "google", onclick: () => startOAuth("google"), text: t("connect_google") }),
      h("button", { type: "button", class: "microsoft", onclick: () => startOAuth("microsoft"), text: t("connect_microsoft") })));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(detectBtn, async () => {
      const d = await api.get("/v1/providers/detect", { email: email.value.trim() });
      clear(detectedBox);
      if (d.oauth) {
        detectedBox.append(h("p", { text: t("use_oauth", { name: d.name || d.provider }) }));
        connectBtn.hidden = true;
        return;
      }
      detectedBox.append(
        h("p", { class: "muted", text: t("detected_from", { name: d.name || d.domain, source: t(`source_${d.source.imap}`) }) }),
        h("div", { class: "form two" }, serverFields("imap", d.imap), serverFields("smtp", d.smtp)));
      connectBtn.hidden = false;
      detectedBox.querySelector("input").focus();
    });
  });
  connectBtn.addEventListener("click", () => busy(connectBtn, async () => {
    if (!form.reportValidity()) return;
    const [imapFs, smtpFs] = detectedBox.querySelectorAll("fieldset.server");
    const acc = await api.post(paths.accounts(), {
      email: email.value.trim(),
      imap: readServer(imapFs, pw.value),
      smtp: readServer(smtpFs, pw.value),
    });
    say(t("connected", { email: acc.email }));
    form.reset();
    clear(detectedBox);
    connectBtn.hidden = true;
    form.dispatchEvent(new CustomEvent("accounts:changed", { bubbles: true }));
  }));
  return form;
}
