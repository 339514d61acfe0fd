// Compose and reply: recipients as chips, the account's signature below the text,
// attachments by picker or drag and drop. Sending answers 202 with the stored Sent copy.
import { api } from "./api.js";
import { h, clear, uid, fmtSize } from "./dom.js";
import { t } from "./i18n.js";
import { say, fail } from "./ui.js";
import { openDialog } from "./dialog.js";

const EMAIL = /^[^\s@<>(),;:]+@[^\s@<>(),;:]+\.[^\s@<>(),;:]+$/;

export function chipInput(labelKey, initial = []) {
  const id = uid("rcpt");
  const values = [];
  const chips = h("ul", { class: "chips", "aria-label": t(labelKey) });
  const input = h("input", { id, type: "email", autocomplete: "off", multiple: true, "aria-describedby": `${id}-hint` });
  const add = (raw) => {
    for (const part of raw.split(/[,;\s]+/)) {
      const v = part.trim();
      if (!v) continue;
      if (!EMAIL.test(v)) { input.setCustomValidity(t("invalid_address", { address: v })); input.reportValidity(); return false; }
      if (!values.includes(v)) values.push(v);
    }
    input.setCustomValidity("");
    draw();
    return true;
  };
  const draw = () => {
    clear(chips);
    values.forEach((v, i) => chips.append(h("li", { class: "chip" }, h("span", { text: v }),
      h("button", {
        type: "button", class: "icon", "aria-label": t("remove_recipient", { address: v }),
        onclick: () => { values.splice(i, 1); draw(); input.focus(); },
        text: "×",
      }))));
  };
  input.addEventListener("keydown", (ev) => {
    if (["Enter", ",", ";"].includes(ev.key) && input.value.trim()) {
      ev.preventDefault();
      if (add(input.value)) input.value = "";
    } else if (ev.key === "Backspace" && !input.value && values.length) {
      values.pop(); draw();
    }
  });
  input.addEventListener("blur", () => { if (input.value.trim() && add(input.value)) input.value = ""; });
  initial.forEach((v) => add(v));
  const el = h("div", { class: "field" },
    h("label", { for: id, text: t(labelKey) }),
    h("div", { class: "chip-box" }, chips, input),
    h("span", { id: `${id}-hint`, class: "sr-only", text: t("recipients_hint") }));
  return {
    el, input,
    values: () => { if (input.value.trim() && add(input.value)) input.value = ""; return [...values]; },
  };
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1] || "");
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

export function openCompose({ accounts, accountId, to = [], subject = "", replyTo = null, onSent }) {
  const accs = accounts || [];
  const accId = uid("from");
  const fromSel = h("select", { id: accId }, accs.map((a) => h("option", { value: a.id, selected: a.id === accountId, text: a.email })));
  const toField = chipInput("to", to);
  const ccField = chipInput("cc");
  const subjId = uid("subj");
  const subj = h("input", { id: subjId, value: subject, required: true });
  const textId = uid("text");
  const text = h("textarea", { id: textId, rows: 10 });
  const signatureOf = (id) => (accs.find((a) => a.id === id)?.settings.signature || "").trim();
  let sig = signatureOf(accountId);
  text.value = sig ? `\n\n-- \n${sig}` : "";
  fromSel.addEventListener("change", () => {
    const next = signatureOf(fromSel.value);
    if (sig && text.value.endsWith(sig)) text.value = text.value.slice(0, -sig.length) + next;
    else if (next) text.value += `\n\n-- \n${next}`;
    sig = next;
  });
  const files = [];
  const fileId = uid("files");
  const picker = h("input", { id: fileId, type: "file", multiple: true, class: "file-input" });
  const list = h("ul", { class: "attachments", "aria-label": t("attachments"), "aria-live": "polite" });
  const drawFiles = () => {
    clear(list);
    files.forEach((f, i) => list.append(h("li", { class: "chip" }, h("span", { text: `${f.name} (${fmtSize(f.size)})` }),
      h("button", { type: "button", class: "icon", "aria-label": t("remove_attachment", { name: f.name }), onclick: () => { files.splice(i, 1); drawFiles(); }, text: "×" }))));
  };
  const addFiles = (fl) => { for (const f of fl) files.push(f); drawFiles(); };
  picker.addEventListener("change", () => { addFiles(picker.files); picker.value = ""; });
  const drop = h("div", { class: "drop", "data-drop": "1" },
    h("label", { for: fileId, class: "button-like", text: t("add_attachment") }), picker,
    h("span", { class: "muted", text: t("or_drop") }), list);
  for (const evName of ["dragenter", "dragover"]) drop.addEventListener(evName, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); addFiles(ev.dataTransfer.files); });
  const body = h("form", { class: "form compose", onsubmit: (ev) => ev.preventDefault() },
    h("label", { for: accId, text: t("from") }), fromSel,
    toField.el, ccField.el,
    h("label", { for: subjId, text: t("subject") }), subj,
    h("label", { for: textId, text: t("message") }), text,
    drop);
  const dlg = openDialog({
    title: replyTo ? t("reply") : t("compose"),
    body, wide: true,
    actions: [
      { label: t("cancel") },
      {
        label: t("send"), primary: true,
        run: async () => {
          const recipients = toField.values();
          if (!recipients.length) { toField.input.setCustomValidity(t("need_recipient")); toField.input.reportValidity(); return false; }
          toField.input.setCustomValidity("");
          try {
            const attachments = [];
            for (const f of files) {
              attachments.push({ filename: f.name, content_type: f.type || "application/octet-stream", content_base64: await readFile(f) });
            }
            const res = await api.post(`/v1/accounts/${encodeURIComponent(fromSel.value)}/send`, {
              to: recipients, cc: ccField.values(), subject: subj.value, text: text.value,
              ...(replyTo ? { reply_to: replyTo } : {}), attachments,
            });
            say(t("sent"));
            onSent?.(res);
            return true;
          } catch (e) { fail(e); return false; }
        },
      },
    ],
  });
  // In a reply the text comes first; otherwise the recipients.
  (replyTo ? text : toField.input).focus();
  if (replyTo) text.setSelectionRange(0, 0);
  return dlg;
}
