// Replication (system administrators): policies that pull from or push to a registry endpoint, run by hand,
// on a cron schedule or on each push; their executions with counts and each task (one artifact copied).
import { list, send } from "../api.js";
import { errorBox, fill, h, size, time } from "../dom.js";
import { adminHeader } from "./admin_tabs.js";
import { changes, PAGE_SIZE, table } from "./common.js";

function createForm(endpoints, act) {
  const name = h("input", { type: "text", id: "rep-name", required: true, autocomplete: "off" });
  const direction = h("select", { id: "rep-direction" }, h("option", { value: "pull" }, "pull from"), h("option", { value: "push" }, "push to"));
  const endpoint = h("select", { id: "rep-endpoint", required: true }, endpoints.map((r) => h("option", { value: r.id }, `${r.name} (${r.url})`)));
  const repos = h("input", { type: "text", id: "rep-filter", required: true, placeholder: "library/**", autocomplete: "off" });
  const tags = h("input", { type: "text", id: "rep-tags", placeholder: "all tags", autocomplete: "off" });
  const namespace = h("input", { type: "text", id: "rep-namespace", placeholder: "same names", autocomplete: "off" });
  const trigger = h("select", { id: "rep-trigger" }, h("option", { value: "manual" }, "by hand"),
    h("option", { value: "scheduled" }, "on a cron schedule"), h("option", { value: "event_based" }, "on each push (push policies)"));
  const cron = h("input", { type: "text", id: "rep-cron", placeholder: "0 3 * * *", disabled: true, autocomplete: "off" });
  trigger.addEventListener("change", () => { cron.disabled = trigger.value !== "scheduled"; });
  const form = h("form", { class: "inline", "aria-label": "New replication policy" },
    h("label", { for: "rep-name" }, "Name "), name,
    h("label", { for: "rep-direction" }, "Direction "), direction,
    h("label", { for: "rep-endpoint" }, "Registry "), endpoint,
    h("label", { for: "rep-filter" }, "Repositories matching "), repos,
    h("label", { for: "rep-tags" }, "Tags matching "), tags,
    h("label", { for: "rep-namespace" }, "Into namespace "), namespace,
    h("label", { for: "rep-trigger" }, "Run "), trigger,
    h("label", { for: "rep-cron" }, "Cron "), cron,
    h("button", { type: "submit", class: "primary" }, "Add policy"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const remote = { id: Number(endpoint.value) };
    const filters = [{ type: "name", value: repos.value.trim() }];
    if (tags.value.trim()) filters.push({ type: "tag", value: tags.value.trim() });
    act(() => send("POST", "/replication/policies", {
      name: name.value.trim(), enabled: true, override: true, filters,
      src_registry: direction.value === "pull" ? remote : null, dest_registry: direction.value === "push" ? remote : null,
      dest_namespace: namespace.value.trim() || null,
      trigger: { type: trigger.value, trigger_settings: trigger.value === "scheduled" ? { cron: cron.value.trim() } : null },
    }));
  });
  return form;
}

function tasksButton(execution) {
  const slot = h("div", { id: `rep-tasks-${execution.id}` });
  const button = h("button", { type: "button", "aria-expanded": "false", "aria-controls": slot.id,
    "aria-label": `Tasks of execution ${execution.id}` }, "Tasks");
  button.addEventListener("click", async () => {
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    if (open) { fill(slot); return; }
    try {
      const { items } = await list(`/replication/executions/${execution.id}/tasks`, { page_size: 50 });
      fill(slot, items.length === 0 ? h("p", { class: "muted" }, "Nothing to copy.") :
        table([["Artifact", ""], ["To", "wide-only"], ["Status", ""], ["Bytes", "num"]], items.map((t) => h("tr", {},
          h("td", { class: "mono" }, `${t.src_resource}:${t.reference}`), h("td", { class: "mono wide-only" }, t.dst_resource),
          h("td", { class: "rep-task-status" }, t.status), h("td", { class: "num" }, size(t.bytes))))));
    } catch (error) {
      fill(slot, errorBox(error));
    }
  });
  return [button, slot];
}

export async function replicationView(ctx, main) {
  const [{ items: policies }, { items: endpoints }, { items: executions }] = await Promise.all([
    list("/replication/policies", { page_size: 100 }), list("/registries", { page_size: 100 }),
    list("/replication/executions", { page_size: PAGE_SIZE })]);
  const { status, act } = changes(ctx);
  const endpointName = (side) => (side && side.id ? (endpoints.find((r) => r.id === side.id) || { name: `#${side.id}` }).name : "this registry");
  const names = Object.fromEntries(policies.map((p) => [p.id, p.name]));
  const rows = policies.map((p) => {
    const run = h("button", { type: "button", "aria-label": `Replicate ${p.name} now` }, "Replicate now");
    run.addEventListener("click", () => act(() => send("POST", "/replication/executions", { policy_id: p.id })));
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete policy ${p.name}` }, "Delete");
    remove.addEventListener("click", () => {
      if (!window.confirm(`Delete replication policy ${p.name}?`)) return;
      act(() => send("DELETE", `/replication/policies/${p.id}`));
    });
    const filters = (p.filters || []).map((f) => `${f.type} ${f.value}`).join(", ");
    return h("tr", {},
      h("td", {}, p.name),
      h("td", {}, `${endpointName(p.src_registry)} → ${endpointName(p.dest_registry)}`),
      h("td", { class: "mono" }, filters, p.dest_namespace ? ` → ${p.dest_namespace}/` : ""),
      h("td", { class: "wide-only" }, p.trigger.type, p.trigger.trigger_settings?.cron ? ` (${p.trigger.trigger_settings.cron})` : ""),
      h("td", {}, h("div", { class: "bar" }, run, remove)));
  });
  const runs = executions.map((e) => h("tr", {},
    h("td", { class: "num" }, e.job_id ? h("a", { href: `/admin/jobs/${e.job_id}` }, e.id) : e.id),
    h("td", {}, names[e.policy_id] || e.policy_id),
    h("td", { class: "rep-status" }, e.status),
    h("td", {}, `${e.succeed} of ${e.total} copied${e.failed ? `, ${e.failed} failed` : ""}`),
    h("td", { class: "wide-only" }, time(e.start_time)),
    h("td", {}, tasksButton(e))));
  fill(main,
    adminHeader("Replication", "replication"),
    endpoints.length === 0
      ? h("p", {}, "Add a registry endpoint first (", h("a", { href: "/admin/registries" }, "Registries"), ").")
      : createForm(endpoints, act),
    status,
    h("h2", {}, "Policies"),
    policies.length === 0 ? h("p", { class: "muted" }, "No replication policies.") :
      table([["Name", ""], ["From → to", ""], ["What", ""], ["Trigger", "wide-only"], [h("span", { class: "muted" }, "Actions"), ""]],
        rows, { id: "rep-policies" }),
    h("h2", {}, "Executions"),
    runs.length === 0 ? h("p", { class: "muted" }, "Nothing replicated yet.") :
      table([["Run", "num"], ["Policy", ""], ["Status", ""], ["Artifacts", ""], ["Started", "wide-only"],
        [h("span", { class: "muted" }, "Tasks"), ""]], runs, { id: "rep-executions" }));
}
