// The UI shell: who is logged in, the header, and a router from paths to views.
import { ApiError, get, hasSession, logout } from "./api.js";
import { errorBox, fill, h } from "./dom.js";
import { gcView } from "./views/admin_gc.js";
import { groupsView } from "./views/admin_groups.js";
import { registriesView } from "./views/admin_registries.js";
import { replicationView } from "./views/admin_replication.js";
import { jobsView, jobView } from "./views/admin_jobs.js";
import { auditView, systemView } from "./views/admin_system.js";
import { usersView } from "./views/admin_users.js";
import { artifactView, repositoryView } from "./views/artifacts.js";
import { loginView } from "./views/login.js";
import { membersView } from "./views/members.js";
import { profileView } from "./views/profile.js";
import { projectsView, projectView } from "./views/projects.js";
import { retentionView } from "./views/project_retention.js";
import { projectLogsView, rulesView } from "./views/project_rules.js";
import { webhooksView } from "./views/project_webhooks.js";
import { repositoriesView } from "./views/repositories.js";
import { robotsView } from "./views/robots.js";

const main = document.getElementById("main");
const account = document.getElementById("account");
const notice = document.getElementById("notice");

/** What every view gets: the auth mode, the user (null when anonymous), navigation and notices. */
export const ctx = {
  mode: document.body.dataset.authMode === "token" ? "token" : "none",
  user: null,
  navigate(url, replace = false) {
    if (replace) history.replaceState(null, "", url); else history.pushState(null, "", url);
    render();
  },
  notice(message) {
    fill(notice, message ? h("div", { class: "info" }, message) : null);
  },
  async refreshUser() {
    ctx.user = null;
    if (ctx.mode !== "token" || !hasSession()) return;  // no session cookie: anonymous, nothing to ask
    try {
      ctx.user = await get("/users/current");
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error;
      if (hasSession()) {  // an expired or revoked session: drop it and browse anonymously
        await logout().catch(() => {});
        ctx.notice("Your session ended (it expired or your account changed); log in again.");
      }
    }
  },
};

function header() {
  document.getElementById("nav-projects").hidden = ctx.mode !== "token";  // an open registry has no projects
  document.getElementById("nav-admin").hidden = !ctx.user?.sysadmin_flag;  // the API refuses others anyway
  if (ctx.mode !== "token") {
    fill(account, h("span", { class: "muted", title: "auth.mode: none" }, "Open registry (no accounts)"));
    return;
  }
  if (ctx.user) {
    const out = h("button", { type: "button" }, "Log out");
    out.addEventListener("click", async () => {
      await logout().catch(() => {});
      ctx.user = null;
      ctx.navigate("/projects");
    });
    fill(account, h("a", { id: "whoami", href: "/profile", title: "Your profile" }, ctx.user.username,
      ctx.user.sysadmin_flag ? " (admin)" : ""), out);
  } else {
    fill(account, h("a", { href: `/login?next=${encodeURIComponent(location.pathname + location.search)}` }, "Log in"));
  }
}

const routes = [
  [/^\/$/, () => ctx.navigate(ctx.mode === "token" ? "/projects" : "/repositories", true)],
  [/^\/login$/, (el) => loginView(ctx, el)],
  [/^\/profile$/, (el) => profileView(ctx, el)],
  [/^\/projects$/, (el) => (ctx.mode === "token" ? projectsView(ctx, el) : repositoriesView(ctx, el))],
  // By full repository name, with or without a project (the only paths of an open registry).
  [/^\/repositories$/, (el) => repositoriesView(ctx, el)],
  [/^\/repositories\/([^/]+)$/, (el, r) => repositoryView(ctx, el, null, r)],
  [/^\/repositories\/([^/]+)\/artifacts\/([^/]+)$/, (el, r, a) => artifactView(ctx, el, null, r, a)],
  [/^\/projects\/([^/]+)$/, (el, p) => projectView(ctx, el, p)],
  [/^\/projects\/([^/]+)\/members$/, (el, p) => membersView(ctx, el, p)],
  [/^\/projects\/([^/]+)\/robots$/, (el, p) => robotsView(ctx, el, p)],
  [/^\/projects\/([^/]+)\/immutability$/, (el, p) => rulesView(ctx, el, p)],
  [/^\/projects\/([^/]+)\/logs$/, (el, p) => projectLogsView(ctx, el, p)],
  [/^\/projects\/([^/]+)\/retention$/, (el, p) => retentionView(ctx, el, p)],
  [/^\/projects\/([^/]+)\/webhooks$/, (el, p) => webhooksView(ctx, el, p)],
  [/^\/admin\/registries$/, (el) => registriesView(ctx, el)],
  [/^\/admin\/groups$/, (el) => groupsView(ctx, el)],
  [/^\/admin\/replication$/, (el) => replicationView(ctx, el)],
  [/^\/admin$/, () => ctx.navigate("/admin/users", true)],
  [/^\/admin\/users$/, (el) => usersView(ctx, el)],
  [/^\/admin\/jobs$/, (el) => jobsView(ctx, el)],
  [/^\/admin\/jobs\/(\d+)$/, (el, id) => jobView(ctx, el, id)],
  [/^\/admin\/gc$/, (el) => gcView(ctx, el)],
  [/^\/admin\/audit$/, (el) => auditView(ctx, el)],
  [/^\/admin\/system$/, (el) => systemView(ctx, el)],
  [/^\/projects\/([^/]+)\/repositories\/([^/]+)$/, (el, p, r) => repositoryView(ctx, el, p, r)],
  [/^\/projects\/([^/]+)\/repositories\/([^/]+)\/artifacts\/([^/]+)$/, (el, p, r, a) => artifactView(ctx, el, p, r, a)],
];

let generation = 0;

/** Render the view of the current path into a detached element, shown only if no newer navigation began. */
export async function render() {
  const mine = ++generation;
  header();
  const path = location.pathname;
  const view = h("div");
  const route = routes.find(([pattern]) => pattern.test(path));
  if (!route) {
    fill(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/projects" }, "Projects")));
    return;
  }
  const args = route[0].exec(path).slice(1).map((part) => decodeURIComponent(part));
  try {
    await route[1](view, ...args);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && ctx.mode === "token" && !ctx.user) {
      fill(view, errorBox(error), h("p", {}, h("a", { href: `/login?next=${encodeURIComponent(path)}` }, "Log in")));
    } else {
      fill(view, errorBox(error));
    }
  }
  if (mine !== generation || path === "/" || path === "/admin") return;  // redirected (and rendered) already
  fill(main, view);
  document.title = `${view.querySelector("h1")?.textContent || "Moorage"} · Moorage`;
  const first = view.querySelector("[autofocus]");
  if (first) first.focus();
}

// Same-origin links navigate inside the page (history API); others behave as usual.
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/static/")) return;
  if (link.hasAttribute("download") || link.target) return;
  event.preventDefault();
  ctx.navigate(url.pathname + url.search);
  main.focus();
});
window.addEventListener("popstate", () => render());

(async () => {
  try {
    await ctx.refreshUser();
  } catch (error) {
    fill(main, errorBox(error));
    return;
  }
  await render();
})();
