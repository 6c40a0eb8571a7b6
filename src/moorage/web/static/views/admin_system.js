// The audit log (every change, push, pull, delete and login; filtered and paged on the server) and the
// system page: the health of the database, Redis and storage as this node sees them, and the versions.
import { get, list, probe } from "../api.js";
import { fill, h, time } from "../dom.js";
import { adminHeader } from "./admin_tabs.js";
import { listParams, pager, PAGE_SIZE, table } from "./common.js";

const FILTERS = [["username", "User"], ["operation", "Operation"], ["resource", "Resource"]];

/** Audit rows as a table (shared with the project's Logs tab). */
export function auditTable(items) {
  if (items.length === 0) return h("p", { class: "muted" }, "No log entries match.");
  return table([["Time", ""], ["User", ""], ["Operation", ""], ["Resource", ""], ["Type", "wide-only"], ["Client", "wide-only"]],
    items.map((e) => h("tr", {},
      h("td", {}, time(e.op_time)),
      h("td", {}, e.username, e.auth_method ? h("span", { class: "muted" }, ` (${e.auth_method})`) : null),
      h("td", {}, e.operation),
      h("td", { class: "mono" }, e.resource, e.detail ? h("div", { class: "muted" }, e.detail) : null),
      h("td", { class: "wide-only" }, e.resource_type),
      h("td", { class: "wide-only mono" }, e.client || ""))), { id: "audit-log" });
}

export async function auditView(ctx, main) {
  const { page } = listParams();
  const params = new URLSearchParams(location.search);
  const values = Object.fromEntries(FILTERS.map(([key]) => [key, params.get(key) || ""]));
  const { items, total } = await list("/audit-logs", { page, page_size: PAGE_SIZE, ...values });
  const inputs = FILTERS.map(([key, label]) => [h("label", { for: `audit-${key}` }, `${label} `),
    h("input", { type: "text", id: `audit-${key}`, name: key, value: values[key] })]);
  const form = h("form", { class: "inline", role: "search", "aria-label": "Filter the audit log" }, inputs,
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams(FILTERS.map(([key]) => [key, form.querySelector(`#audit-${key}`).value.trim()]).filter(([, v]) => v));
    ctx.navigate(`/admin/audit${query.toString() ? `?${query}` : ""}`);
  });
  fill(main, adminHeader("Audit log", "audit"), form, auditTable(items), pager(page, total, items.length));
}

export async function systemView(ctx, main) {
  const [health, info] = await Promise.all([probe("/health"), get("/systeminfo")]);
  const components = (health.data && health.data.components) || [];
  const overall = health.data ? health.data.status : `HTTP ${health.status}`;
  const rows = components.map((c) => h("tr", { "data-component": c.name },
    h("td", {}, c.name),
    h("td", {}, c.status === "healthy" ? h("span", { class: "badge public" }, "healthy") : h("span", { class: "badge failed" }, c.status)),
    h("td", { class: "num" }, c.latency_ms != null ? `${Number(c.latency_ms).toFixed(1)} ms` : ""),
    h("td", {}, c.required === false ? "optional" : "required"),
    h("td", { class: "mono" }, c.error || "")));
  if (!components.some((c) => c.name === "redis")) {
    rows.push(h("tr", { "data-component": "redis" }, h("td", {}, "redis"), h("td", {}, h("span", { class: "badge" }, "not configured")),
      h("td", {}, ""), h("td", {}, "optional"), h("td", {}, "set redis.url to share caches and rate limits between nodes")));
  }
  fill(main,
    adminHeader("System", "system"),
    h("p", {}, "Overall: ", h("strong", { id: "health-status" }, overall),
      " (as this node sees its dependencies; a load balancer asks ", h("code", {}, "/api/v2.0/health"), ")"),
    table([["Component", ""], ["Status", ""], ["Latency", "num"], ["", ""], ["Error", ""]], rows, { id: "health" }),
    h("h2", {}, "Versions and mode"),
    h("dl", { class: "facts" },
      h("dt", {}, "Moorage"), h("dd", {}, info.moorage_version),
      h("dt", {}, "API"), h("dd", {}, `Harbor ${info.harbor_version}`),
      h("dt", {}, "Read-only"), h("dd", {}, info.read_only ? "yes (storage.maintenance.readonly)" : "no")));
}
