// A project's webhooks (project admins change them, maintainers read them): policies with their target and
// events, enable/disable, delete, and the delivery log (each event sent, its status and last error).
import { get, list, send } from "../api.js";
import { fill, h, time } from "../dom.js";
import { changes, stateBadge, table } from "./common.js";
import { projectHeader } from "./project_tabs.js";

function createForm(events, act, base) {
  const name = h("input", { type: "text", id: "webhook-name", required: true, autocomplete: "off" });
  const address = h("input", { type: "text", id: "webhook-address", required: true, autocomplete: "off" });
  const secret = h("input", { type: "password", id: "webhook-secret", autocomplete: "new-password" });
  const boxes = events.map((e) => h("label", {}, h("input", { type: "checkbox", name: "event", value: e, checked: e === "PUSH_ARTIFACT" }), ` ${e}`));
  const form = h("form", { class: "inline", "aria-label": "New webhook" },
    h("label", { for: "webhook-name" }, "Name "), name,
    h("label", { for: "webhook-address" }, "URL "), address,
    h("label", { for: "webhook-secret" }, "Signing secret (optional) "), secret,
    h("fieldset", { class: "events" }, h("legend", {}, "Events"), boxes),
    h("button", { type: "submit", class: "primary" }, "Add webhook"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const types = [...form.querySelectorAll("input[name=event]:checked")].map((c) => c.value);
    act(() => send("POST", base, { name: name.value.trim(), enabled: true, event_types: types,
      targets: [{ type: "http", address: address.value.trim(), secret: secret.value || null }] }));
  });
  return form;
}

export async function webhooksView(ctx, main, name) {
  const project = await get(`/projects/${encodeURIComponent(name)}`);
  const base = `/projects/${encodeURIComponent(project.name)}/webhook`;
  const [{ items }, events] = await Promise.all([list(`${base}/policies`, { page_size: 100 }), get(`${base}/events`)]);
  // The delivery log is per policy (Harbor's policy_id is required): the newest of each, newest first.
  const perPolicy = await Promise.all(items.map((p) => list(`${base}/jobs`, { policy_id: p.id, page_size: 15 })));
  const jobs = { items: perPolicy.flatMap((found) => found.items)
    .sort((a, b) => String(b.creation_time).localeCompare(String(a.creation_time))).slice(0, 15) };
  const manage = project.current_user_role_id === 1 || Boolean(ctx.user?.sysadmin_flag);
  const { status, act } = changes(ctx);
  const names = Object.fromEntries(items.map((p) => [p.id, p.name]));
  const rows = items.map((p) => {
    const cells = [h("td", {}, p.name), h("td", { class: "mono" }, p.targets.map((t) => t.address).join(", ")),
      h("td", {}, p.event_types.join(", ")), h("td", {}, stateBadge(p.enabled, "enabled", "disabled"))];
    if (manage) {
      const toggle = h("button", { type: "button", "aria-label": `${p.enabled ? "Disable" : "Enable"} webhook ${p.name}` }, p.enabled ? "Disable" : "Enable");
      toggle.addEventListener("click", () => act(() => send("PUT", `${base}/policies/${p.id}`, { enabled: !p.enabled })));
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete webhook ${p.name}` }, "Delete");
      remove.addEventListener("click", () => act(() => send("DELETE", `${base}/policies/${p.id}`)));
      cells.push(h("td", {}, h("div", { class: "bar" }, toggle, remove)));
    }
    return h("tr", {}, cells);
  });
  const deliveries = jobs.items.map((j) => h("tr", {},
    h("td", {}, time(j.creation_time)),
    h("td", {}, names[j.policy_id] || j.policy_id),
    h("td", {}, j.event_type),
    h("td", { class: "delivery-status" }, j.status, j.attempts > 1 ? h("span", { class: "muted" }, ` (${j.attempts} attempts)`) : null),
    h("td", { class: "mono" }, j.last_error || "")));
  fill(main,
    projectHeader(ctx, project, "webhooks"),
    manage ? createForm(events.event_type, act, `${base}/policies`) : null, status,
    items.length === 0 ? h("p", { class: "muted" }, "No webhooks.") :
      table([["Name", ""], ["Target", ""], ["Events", ""], ["Status", ""], ...(manage ? [[h("span", { class: "muted" }, "Actions"), ""]] : [])],
        rows, { id: "webhooks" }),
    h("h2", {}, "Deliveries"),
    deliveries.length === 0 ? h("p", { class: "muted" }, "Nothing sent yet.") :
      table([["Time", ""], ["Webhook", ""], ["Event", ""], ["Status", ""], ["Last error", ""]], deliveries, { id: "deliveries" }));
}
