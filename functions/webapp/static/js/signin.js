// Local sign-in: only the local runner (make run) answers /app/dev/*. It mints a user token for
// a user of the dev tenant. Deployed, a tenant's own backend mints the token and opens
// /app/#token=... (README: embedding).
import { h } from "./dom.js";
import { t } from "./i18n.js";
import { session } from "./api.js";
import { fail, focusMain } from "./ui.js";

export async function renderSignin(main) {
  let config = null;
  try {
    const res = await fetch(new URL("../dev/config", import.meta.url), { credentials: "omit" });
    if (res.ok) config = await res.json();
  } catch { /* deployed: no local sign-in */ }
  const heading = h("h1", { text: t("signin_title") });
  if (!config) {
    main.append(h("section", { class: "card narrow" }, heading, h("p", { text: t("signin_embedded") })));
    focusMain(heading);
    return;
  }
  const input = h("input", { id: "signin-user", name: "user_id", required: true, autocomplete: "username", value: config.user_id || "" });
  const form = h("form", { class: "card narrow", "aria-labelledby": "signin-h" },
    heading,
    h("p", { text: t("signin_local", { tenant: config.tenant_id }) }),
    h("label", { for: "signin-user", text: t("user_id") }),
    input,
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary", text: t("sign_in") })));
  heading.id = "signin-h";
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const res = await fetch(new URL("../dev/token", import.meta.url), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user_id: input.value.trim() }),
        credentials: "omit",
      });
      const data = await res.json();
      if (!res.ok) throw Object.assign(new Error(data.message), { code: data.code });
      session.set(data.token, data.user_id, data.expires_at);
      location.hash = "#/mail";
    } catch (e) { fail(e); }
  });
  main.append(form);
  input.focus();
}
