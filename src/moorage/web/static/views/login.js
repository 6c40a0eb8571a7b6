// The login form (auth.mode: token): POST /c/login, then back to where the user was going.
import { get, login } from "../api.js";
import { errorBox, fill, h } from "../dom.js";

export async function loginView(ctx, main) {
  const next = new URLSearchParams(location.search).get("next") || "/projects";
  const target = next.startsWith("/") && !next.startsWith("//") ? next : "/projects";
  if (ctx.mode !== "token") {
    fill(main, h("h1", {}, "Log in"), h("p", {}, "This registry runs with auth.mode: none: there are no accounts, browse ",
      h("a", { href: "/projects" }, "the projects"), " without logging in."));
    return;
  }
  const status = h("div", { "aria-live": "assertive" });
  const name = h("input", { type: "text", name: "principal", id: "principal", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { type: "password", name: "password", id: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, "Log in");
  const form = h("form", { class: "stack", "aria-label": "Log in" },
    h("label", { for: "principal" }, "User name", name),
    h("label", { for: "password" }, "Password", password),
    submit,
    // Single sign-on (auth.oidc): a link to the provider, shown when /systeminfo names one.
    h("div", { id: "sso" }));
  const sso = form.querySelector("#sso");
  get("/systeminfo").then((info) => {
    if (info && info.oidc_provider_name) {
      // target="_self": a full page load to the server (the app's router leaves links with a target alone).
      fill(sso, h("a", { class: "button", target: "_self", href: `/c/oidc/login?next=${encodeURIComponent(target)}` },
        `Log in with ${info.oidc_provider_name}`));
    }
  }).catch(() => {});
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    fill(status);
    try {
      await login(name.value, password.value);
      await ctx.refreshUser();
      ctx.notice(null);
      ctx.navigate(target, true);
    } catch (error) {
      fill(status, errorBox(error));
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  // A refused single sign-on comes back here with the server's (generic) reason.
  const ssoError = new URLSearchParams(location.search).get("sso_error");
  if (ssoError) fill(status, errorBox(new Error(ssoError)));
  fill(main, h("h1", {}, "Log in"), status, form);
}
