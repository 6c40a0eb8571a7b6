// Projects: the list (search, paging, create) and a project's page with its repositories.
import { get, list, send } from "../api.js";
import { errorBox, fill, h, size, time } from "../dom.js";
import { listParams, pager, PAGE_SIZE, repositoryTable, searchBox } from "./common.js";
import { projectHeader, ROLES, visibility } from "./project_tabs.js";


const GIB = 1024 ** 3;

/** "12.5" (GiB) -> bytes; "" -> null (the configured default); "-1" -> unlimited. */
function limitBytes(text) {
  const value = text.trim();
  if (value === "") return null;
  return Number(value) < 0 ? -1 : Math.round(Number(value) * GIB);
}

/** What a system administrator adds to the new-project form: the storage quota and, when registry endpoints
 * exist, the registry a proxy-cache project pulls through (both Harbor's fields of POST /projects). */
async function adminFields() {
  const limit = h("input", { type: "text", id: "new-project-quota", inputmode: "decimal", placeholder: "default", size: "8" });
  const { items } = await list("/registries", { page_size: 100 }).catch(() => ({ items: [] }));
  const proxy = items.length ? h("select", { id: "new-project-proxy" }, h("option", { value: "" }, "no (a normal project)"),
    items.map((r) => h("option", { value: r.id }, `${r.name} (${r.url})`))) : null;
  const cache = proxy ? h("input", { type: "text", id: "new-project-cache", inputmode: "decimal", placeholder: "none", size: "8" }) : null;
  const fields = [h("label", { for: "new-project-quota" }, "Storage limit (GiB, -1 unlimited) "), limit,
    proxy ? [h("label", { for: "new-project-proxy" }, "Proxy cache of "), proxy,
      h("label", { for: "new-project-cache" }, "Cache limit (GiB, evicts the least recently pulled) "), cache] : null];
  return {
    fields,
    values: () => {
      const registry = proxy && proxy.value ? Number(proxy.value) : null;
      const cacheBytes = registry && cache ? limitBytes(cache.value) : null;
      return { storage_limit: limitBytes(limit.value), registry_id: registry,
        metadata: cacheBytes === null ? null : { proxy_cache_limit: String(cacheBytes) } };
    },
  };
}

async function createForm(ctx) {
  const status = h("div", { "aria-live": "assertive" });
  const admin = ctx.user?.sysadmin_flag ? await adminFields() : null;
  const name = h("input", { type: "text", id: "new-project-name", name: "project_name", required: true,
    pattern: "[a-z0-9]+(?:[._\\-][a-z0-9]+)*", title: "lower-case letters, digits and . _ - between them" });
  const isPublic = h("input", { type: "checkbox", id: "new-project-public", name: "public" });
  const form = h("form", { class: "inline", "aria-label": "New project" },
    h("label", { for: "new-project-name" }, "Name "), name,
    h("label", {}, isPublic, " Public (anyone may pull)"),
    admin ? admin.fields : null,
    h("button", { type: "submit", class: "primary" }, "Create"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(status);
    try {
      const extra = admin ? Object.fromEntries(Object.entries(admin.values()).filter(([, v]) => v !== null)) : {};
      if (Number.isNaN(extra.storage_limit)) throw new Error("Storage limit: write a number of GiB, or -1 for unlimited");
      if (extra.metadata?.proxy_cache_limit === "NaN") throw new Error("Cache limit: write a number of GiB, or -1 for none");
      await send("POST", "/projects", { project_name: name.value.trim(), ...extra,
        metadata: { ...(extra.metadata || {}), public: String(isPublic.checked) } });
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
    newButton.addEventListener("click", async () => {
      const open = newButton.getAttribute("aria-expanded") === "true";
      newButton.setAttribute("aria-expanded", String(!open));
      fill(slot, open ? null : await createForm(ctx));
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

/** The project's quota (members and administrators read it; administrators change it), or null. */
async function quotaFacts(ctx, project) {
  if (!ctx.user || (project.current_user_role_id == null && !ctx.user.sysadmin_flag)) return null;
  let quota;
  try {
    quota = await get(`/quotas/${project.project_id}`);
  } catch (error) {
    return null;  // a registry without quotas, or not allowed: nothing to show
  }
  const limit = quota.hard.storage;
  const used = quota.used.storage;
  const bar = limit > 0 ? h("meter", { id: "quota-meter", min: "0", max: String(limit), value: String(Math.min(used, limit)),
    "aria-label": "Storage used", high: String(limit * 0.9) }) : null;
  let edit = null;
  if (ctx.user.sysadmin_flag) {
    const input = h("input", { type: "text", id: "quota-limit", inputmode: "decimal", size: "8",
      value: limit < 0 ? "-1" : String(Math.round((limit / GIB) * 1000) / 1000) });
    const status = h("span", { "aria-live": "assertive" });
    edit = h("form", { class: "inline", "aria-label": "Storage quota" },
      h("label", { for: "quota-limit" }, "Storage limit (GiB, -1 unlimited) "), input,
      h("button", { type: "submit" }, "Set quota"), status);
    edit.addEventListener("submit", async (event) => {
      event.preventDefault();
      fill(status);
      try {
        const bytes = limitBytes(input.value);
        if (bytes === null || Number.isNaN(bytes)) throw new Error("Storage limit: write a number of GiB, or -1 for unlimited");
        await send("PUT", `/quotas/${project.project_id}`, { hard: { storage: bytes } });
        ctx.navigate(location.pathname + location.search, true);
      } catch (error) {
        fill(status, errorBox(error));
      }
    });
  }
  return [h("dt", {}, "Storage"), h("dd", { id: "quota-usage" }, `${size(used)} of ${limit < 0 ? "unlimited" : size(limit)}`, " ", bar,
    h("span", { class: "muted" }, ` · ${quota.used.count} artifacts`), edit)];
}

/** A proxy-cache project's facts: its endpoint and cache limit (changed here by who may change the project). */
function proxyFacts(ctx, project) {
  const limit = project.metadata?.proxy_cache_limit;
  if (limit === undefined) return null;
  const bytes = Number(limit);
  let edit = null;
  if (ctx.user?.sysadmin_flag || project.current_user_role_id === 1) {
    const input = h("input", { type: "text", id: "cache-limit", inputmode: "decimal", size: "8",
      value: bytes < 0 ? "-1" : String(Math.round((bytes / GIB) * 1000) / 1000) });
    const status = h("span", { "aria-live": "assertive" });
    edit = h("form", { class: "inline", "aria-label": "Cache limit" },
      h("label", { for: "cache-limit" }, "Cache limit (GiB, -1 none) "), input,
      h("button", { type: "submit" }, "Set cache limit"), status);
    edit.addEventListener("submit", async (event) => {
      event.preventDefault();
      fill(status);
      try {
        const value = limitBytes(input.value);
        if (value === null || Number.isNaN(value)) throw new Error("Cache limit: write a number of GiB, or -1 for none");
        await send("PUT", `/projects/${encodeURIComponent(project.name)}`, { metadata: { proxy_cache_limit: String(value) } });
        ctx.navigate(location.pathname + location.search, true);
      } catch (error) {
        fill(status, errorBox(error));
      }
    });
  }
  return [h("dt", {}, "Proxy cache"), h("dd", { id: "proxy-cache" },
    project.registry_id == null ? "of a deleted registry endpoint" : `of registry endpoint ${project.registry_id}`,
    ` · cache limit ${bytes < 0 ? "none" : size(bytes)}`,
    h("span", { class: "muted" }, bytes < 0 ? "" : " (the least recently pulled artifacts are evicted past it)"), edit)];
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
  const quota = await quotaFacts(ctx, project);
  fill(main,
    projectHeader(ctx, project, "repositories"),
    h("dl", { class: "facts" },
      h("dt", {}, "Your role"), h("dd", {}, ROLES[project.current_user_role_id] || (ctx.user?.sysadmin_flag ? "system admin" : "none")),
      quota,
      proxyFacts(ctx, project),
      project.metadata?.proxy_cache_limit !== undefined
        ? [h("dt", {}, "Pull here"), h("dd", {}, h("code", {}, `podman pull ${location.host}/${project.name}/<upstream repository>:<tag>`))]
        : [h("dt", {}, "Push here"), h("dd", {}, h("code", {}, `podman push <image> ${location.host}/${project.name}/<repository>:<tag>`))]),
    h("div", { class: "bar" }, searchBox(ctx, "Search repositories", q)),
    repositoryTable(items, q, href),
    pager(page, total, items.length));
}
