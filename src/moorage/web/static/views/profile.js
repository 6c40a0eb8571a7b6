// The logged-in user's own profile; for single sign-on users, the CLI secret (Harbor's oidc_user_meta):
// shown on demand, copyable, regenerated with PUT /users/{id}/cli_secret.
import { get, send } from "../api.js";
import { copyText, errorBox, fill, h } from "../dom.js";

function cliSecret(me) {
  const status = h("div", { "aria-live": "polite" });
  const secret = h("input", { type: "password", id: "cli-secret", readonly: true, autocomplete: "off",
    "aria-label": "CLI secret", size: 36, class: "mono", value: me.oidc_user_meta.secret });
  const show = h("button", { type: "button", "aria-pressed": "false" }, "Show");
  show.addEventListener("click", () => {
    const shown = secret.type === "password";
    secret.type = shown ? "text" : "password";
    show.textContent = shown ? "Hide" : "Show";
    show.setAttribute("aria-pressed", String(shown));
  });
  const copy = h("button", { type: "button", "aria-label": "Copy the CLI secret" }, "Copy");
  copy.addEventListener("click", async () => {
    await copyText(secret.value).catch(() => {});
    copy.textContent = "Copied";
    setTimeout(() => { copy.textContent = "Copy"; }, 2000);
  });
  const generate = h("button", { type: "button" }, me.oidc_user_meta.secret ? "Generate a new secret" : "Generate a secret");
  generate.addEventListener("click", async () => {
    fill(status);
    generate.disabled = true;
    try {
      const out = await send("PUT", `/users/${me.user_id}/cli_secret`, {});
      secret.value = out.secret;
      copy.disabled = show.disabled = false;
      generate.textContent = "Generate a new secret";
      fill(status, h("div", { class: "info" }, "New secret set: any previous one no longer logs in."));
    } catch (error) {
      fill(status, errorBox(error));
    } finally {
      generate.disabled = false;
    }
  });
  copy.disabled = show.disabled = !me.oidc_user_meta.secret;
  return h("section", { "aria-labelledby": "cli-secret-title" },
    h("h2", { id: "cli-secret-title" }, "CLI secret"),
    h("p", {}, "You sign in through single sign-on; docker, podman and skopeo use this secret as your password: ",
      h("code", {}, `podman login ${location.host} -u '${me.username}'`), "."),
    h("div", { class: "bar" }, secret, show, copy, generate),
    status);
}

export async function profileView(ctx, main) {
  if (!ctx.user) {
    ctx.navigate("/login?next=/profile", true);
    return;
  }
  const me = await get("/users/current");
  const facts = [["User name", me.username], ["E-mail", me.email || "—"], ["System administrator", me.sysadmin_flag ? "yes" : "no"]];
  fill(main, h("h1", {}, "Your profile"),
    h("dl", {}, facts.map(([key, value]) => [h("dt", {}, key), h("dd", {}, value)])),
    me.oidc_user_meta ? cliSecret(me) : null);
}
