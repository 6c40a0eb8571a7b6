// A project's robot accounts (maintainer and above): create with the secret shown once, disable, refresh, delete.
import { get, list, send } from "../api.js";
import { copyable, errorBox, fill, h, time } from "../dom.js";
import { listParams, pager, PAGE_SIZE } from "./common.js";
import { projectHeader } from "./project_tabs.js";

const ACTIONS = ["pull", "push", "delete"];

function actionsOf(robot) {
  return (robot.permissions || []).flatMap((p) => (p.access || []).map((a) => a.action)).join(", ");
}

function expiry(robot) {
  return robot.expires_at === -1 ? "never" : time(new Date(robot.expires_at * 1000).toISOString());
}

/** The secret, once: whoever closes this panel without copying it must refresh the secret. */
function secretPanel(name, secret) {
  return h("div", { class: "info", id: "robot-secret", role: "alert" },
    h("p", {}, h("strong", {}, `Secret of ${name}`), ": copy it now, it is not shown again."),
    copyable(secret, `secret of ${name}`),
    // No -p: the secret stays out of shell history; podman asks for it (paste the one copied above).
    copyable(`podman login ${location.host} -u '${name}'`, `login command of ${name}`));
}

export async function robotsView(ctx, main, name, secret = null) {
  const { page } = listParams();
  const project = await get(`/projects/${encodeURIComponent(name)}`);
  const { items, total } = await list("/robots", { project_id: project.project_id, page, page_size: PAGE_SIZE });
  const status = h("div", { "aria-live": "assertive" });
  const redraw = (shown) => robotsView(ctx, main, name, shown);  // fills `main` once it has the new list
  const act = async (work) => {
    fill(status);
    try {
      const shown = await work();
      await redraw(shown || null);
    } catch (error) {
      fill(status, errorBox(error));
    }
  };
  const rows = items.map((r) => {
    const toggle = h("button", { type: "button", "aria-label": `${r.disable ? "Enable" : "Disable"} ${r.name}` },
      r.disable ? "Enable" : "Disable");
    toggle.addEventListener("click", () => act(() => send("PUT", `/robots/${r.id}`, { disable: !r.disable })));
    const refresh = h("button", { type: "button", "aria-label": `New secret for ${r.name}` }, "New secret");
    refresh.addEventListener("click", () => act(async () => {
      const out = await send("PATCH", `/robots/${r.id}`, {});
      return secretPanel(r.name, out.secret);
    }));
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${r.name}` }, "Delete");
    remove.addEventListener("click", () => act(() => send("DELETE", `/robots/${r.id}`)));
    return h("tr", {},
      h("td", { class: "mono" }, r.name),
      h("td", {}, actionsOf(r)),
      h("td", {}, r.disable ? h("span", { class: "badge private" }, "disabled") : h("span", { class: "badge public" }, "enabled")),
      h("td", { class: "wide-only" }, expiry(r)),
      h("td", {}, h("div", { class: "bar" }, toggle, refresh, remove)));
  });
  const robotName = h("input", { type: "text", id: "robot-name", required: true, autocomplete: "off" });
  const checks = ACTIONS.map((a) => h("label", {}, h("input", { type: "checkbox", name: "action", value: a, checked: a === "pull" }), ` ${a}`));
  const duration = h("select", { id: "robot-duration" },
    [["-1", "never expires"], ["30", "30 days"], ["90", "90 days"], ["365", "1 year"]].map(([v, label]) => h("option", { value: v }, label)));
  const form = h("form", { class: "inline", "aria-label": "New robot account" },
    h("label", { for: "robot-name" }, "Name "), robotName, checks,
    h("label", { for: "robot-duration" }, "Expires "), duration,
    h("button", { type: "submit", class: "primary" }, "Create robot"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const actions = [...form.querySelectorAll("input[name=action]:checked")].map((c) => c.value);
    act(async () => {
      const out = await send("POST", "/robots", {
        name: robotName.value.trim(), level: "project", duration: Number(duration.value),
        permissions: [{ kind: "project", namespace: project.name, access: actions.map((action) => ({ resource: "repository", action })) }],
      });
      return secretPanel(out.name, out.secret);
    });
  });
  fill(main,
    projectHeader(ctx, project, "robots"),
    secret, form, status,
    items.length === 0 ? h("p", { class: "muted" }, "No robot accounts.") :
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Permissions"),
        h("th", { scope: "col" }, "Status"), h("th", { scope: "col", class: "wide-only" }, "Expires"),
        h("th", { scope: "col" }, h("span", { class: "muted" }, "Actions")))), h("tbody", {}, rows)),
    pager(page, total, items.length));
}
