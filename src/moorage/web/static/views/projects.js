// Projects: the list (search, paging, create) and a project's page with its repositories.
import { get, list, send } from "../api.js";
import { errorBox, fill, h, time } from "../dom.js";
import { listParams, pager, PAGE_SIZE, repositoryTable, searchBox } from "./common.js";
import { projectHeader, ROLES, visibility } from "./project_tabs.js";


function createForm(ctx) {
  const status = h("div", { "aria-live": "assertive" });
  const name = h("input", { type: "text", id: "new-project-name", name: "project_name", required: true,
    pattern: "[a-z0-9]+(?:[._\\-][a-z0-9]+)*", title: "lower-case letters, digits and . _ - between them" });
  const isPublic = h("input", { type: "checkbox", id: "new-project-public", name: "public" });
  const form = h("form", { class: "inline", "aria-label": "New project" },
    h("label", { for: "new-project-name" }, "Name "), name,
    h("label", {}, isPublic, " Public (anyone may pull)"),
    h("button", { type: "submit", class: "primary" }, "Create"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(status);
    try {
      await send("POST", "/projects", { project_name: name.value.trim(), metadata: { public: String(isPublic.checked) } });
      ctx.navigate(`/projects/${encodeURIComponent(name.value.trim())}`);
    } catch (error) {
      fill(status, errorBox(error));
    }
  });
  return form;
}

export async function projectsView(ctx, main) {
  const { q, page } = listParams();
  const { items, total } = await list("/projects", { page, page_size: PAGE_SIZE, name: q });
  const slot = h("div");
  let newButton = null;
  if (ctx.user) {
    newButton = h("button", { type: "button", class: "primary", "aria-expanded": "false" }, "New project");
    newButton.addEventListener("click", () => {
      const open = newButton.getAttribute("aria-expanded") === "true";
      newButton.setAttribute("aria-expanded", String(!open));
      fill(slot, open ? null : createForm(ctx));
      if (!open) slot.querySelector("input").focus();  // the view is on the page by the time a button is clicked
    });
  }
  const rows = items.map((p) => h("tr", {},
    h("td", {}, h("a", { href: `/projects/${encodeURIComponent(p.name)}` }, p.name)),
    h("td", {}, visibility(p)),
    h("td", { class: "num" }, p.repo_count),
    h("td", { class: "wide-only" }, ROLES[p.current_user_role_id] || h("span", { class: "muted" }, "—")),
    h("td", { class: "wide-only" }, time(p.creation_time))));
  fill(main,
    h("h1", {}, "Projects"),
    ctx.mode === "token" && !ctx.user ? h("p", { class: "muted" }, "Public projects are shown; log in to see yours.") : null,
    h("div", { class: "bar" }, searchBox(ctx, "Search projects", q), newButton),
    slot,
    items.length === 0
      ? h("p", { class: "muted" }, q ? `No project matches “${q}”.` : "No projects yet.")
      : h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Access"),
        h("th", { scope: "col", class: "num" }, "Repositories"), h("th", { scope: "col", class: "wide-only" }, "Your role"),
        h("th", { scope: "col", class: "wide-only" }, "Created"))), h("tbody", {}, rows)),
    pager(page, total, items.length));
}

export async function projectView(ctx, main, name) {
  const { q, page } = listParams();
  const project = await get(`/projects/${encodeURIComponent(name)}`);
  const { items, total } = await list(`/projects/${encodeURIComponent(project.name)}/repositories`,
    { page, page_size: PAGE_SIZE, q: q ? `name=~${q}` : "" });
  const prefix = `${project.name}/`;
  const href = (r) => {
    const inner = r.name.startsWith(prefix) ? r.name.slice(prefix.length) : r.name;
    return `/projects/${encodeURIComponent(project.name)}/repositories/${encodeURIComponent(inner)}`;
  };
  fill(main,
    projectHeader(ctx, project, "repositories"),
    h("dl", { class: "facts" },
      h("dt", {}, "Your role"), h("dd", {}, ROLES[project.current_user_role_id] || (ctx.user?.sysadmin_flag ? "system admin" : "none")),
      h("dt", {}, "Push here"), h("dd", {}, h("code", {}, `podman push <image> ${location.host}/${project.name}/<repository>:<tag>`))),
    h("div", { class: "bar" }, searchBox(ctx, "Search repositories", q)),
    repositoryTable(items, q, href),
    pager(page, total, items.length));
}
