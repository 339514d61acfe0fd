// Modal dialogs on the native <dialog> (focus stays inside, Escape closes); focus goes to the
// first field on open and back to the control that opened it on close.
import { h, uid } from "./dom.js";
import { t } from "./i18n.js";

export function openDialog({ title, body, actions = [], onClose, wide = false }) {
  const opener = document.activeElement;
  const titleId = uid("dlg-title");
  const dlg = h("dialog", { class: wide ? "dlg wide" : "dlg", "aria-labelledby": titleId });
  const close = () => dlg.close();
  const head = h("div", { class: "dlg-head" },
    h("h2", { id: titleId, text: title }),
    h("button", { type: "button", class: "icon", "aria-label": t("close"), onclick: close, text: "×" }));
  const foot = h("div", { class: "dlg-actions" }, actions.map((a) =>
    h("button", {
      type: "button",
      class: a.primary ? "primary" : a.danger ? "danger" : "",
      onclick: async () => { if ((await a.run?.(dlg)) !== false) close(); },
      text: a.label,
    })));
  dlg.append(head, h("div", { class: "dlg-body" }, body), foot);
  dlg.addEventListener("close", () => {
    dlg.remove();
    onClose?.();
    if (opener && opener.isConnected) opener.focus();
  });
  document.body.append(dlg);
  dlg.showModal();
  const first = dlg.querySelector(".dlg-body input, .dlg-body select, .dlg-body textarea, .dlg-body button");
  (first || dlg.querySelector(".dlg-actions button"))?.focus();
  return dlg;
}

export function confirmDialog({ title, message, confirm, danger = true }) {
  return new Promise((resolve) => {
    let ok = false;
    openDialog({
      title,
      body: h("p", { text: message }),
      actions: [
        { label: t("cancel") },
        { label: confirm, danger, primary: !danger, run: () => { ok = true; } },
      ],
      onClose: () => resolve(ok),
    });
  });
}
