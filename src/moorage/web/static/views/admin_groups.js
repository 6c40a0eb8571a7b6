// User groups (system administrators): local groups with their members, LDAP and OIDC groups as the
// identity sources name them; a group is given a role in a project on the project's Members tab.
import { get, list, send } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { adminHeader } from "./admin_tabs.js";
import { changes, listParams, pager, PAGE_SIZE, searchBox, table } from "./common.js";

const TYPES = { 1: "LDAP", 2: "local", 3: "OIDC" };

async function userIdOf(name) {
  const { items } = await list("/users", { username: name, page_size: 100 });
  const found = items.find((u) => u.username === name);
  if (!found) throw new Error(`no user is named “${name}”; create it on the Users screen first`);
  return found.user_id;
}

function membersPanel(group) {
  const slot = h("div", { id: `group-members-${group.id}` });
  const button = h("button", { type: "button", "aria-expanded": "false", "aria-controls": slot.id,
    "aria-label": `Members of ${group.group_name}` }, "Members");
  const draw = async () => {
    const ids = (await get(`/usergroups/${group.id}/members`)).map((m) => m.user_id);
    const users = await Promise.all(ids.map((id) => get(`/users/${id}`)));
    const status = h("div", { "aria-live": "assertive" });
    const rows = users.map((u) => {
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Remove ${u.username} from ${group.group_name}` }, "Remove");
      remove.addEventListener("click", async () => {
        try { await send("DELETE", `/usergroups/${group.id}/members/${u.user_id}`); await draw(); } catch (error) { fill(status, errorBox(error)); }
      });
      return h("li", {}, u.username, " ", remove);
    });
    let form = null;
    if (group.group_type === 2) {  // only local groups have members kept here
      const name = h("input", { type: "text", id: `group-add-${group.id}`, autocomplete: "off", required: true });
      form = h("form", { class: "inline", "aria-label": `Add a user to ${group.group_name}` },
        h("label", { for: name.id }, "User name "), name, h("button", { type: "submit" }, "Add to group"));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          await send("POST", `/usergroups/${group.id}/members`, { user_id: await userIdOf(name.value.trim()) });
          await draw();
        } catch (error) {
          fill(status, errorBox(error));
        }
      });
    }
    fill(slot, rows.length ? h("ul", { class: "group-members" }, rows) : h("p", { class: "muted" }, "No members."), form, status);
  };
  button.addEventListener("click", async () => {
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    if (open) { fill(slot); return; }
    try { await draw(); } catch (error) { fill(slot, errorBox(error)); }
  });
  return [button, slot];
}

export async function groupsView(ctx, main) {
  const { q, page } = listParams();
  const { items, total } = await list("/usergroups", { page, page_size: PAGE_SIZE, group_name: q });
  const { status, act } = changes(ctx);
  const name = h("input", { type: "text", id: "new-group-name", required: true, autocomplete: "off" });
  const form = h("form", { class: "inline", "aria-label": "New group" },
    h("label", { for: "new-group-name" }, "Local group name "), name, h("button", { type: "submit", class: "primary" }, "Create group"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => send("POST", "/usergroups", { group_name: name.value.trim(), group_type: 2 }));
  });
  const rows = items.map((g) => {
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete group ${g.group_name}` }, "Delete");
    remove.addEventListener("click", () => {
      if (!window.confirm(`Delete group ${g.group_name}? The roles it gives in projects end.`)) return;
      act(() => send("DELETE", `/usergroups/${g.id}`));
    });
    return h("tr", {}, h("td", {}, g.group_name), h("td", {}, TYPES[g.group_type] || g.group_type),
      h("td", { class: "mono wide-only" }, g.ldap_group_dn || ""), h("td", {}, h("div", { class: "bar" }, membersPanel(g), remove)));
  });
  fill(main,
    adminHeader("Groups", "groups"),
    h("p", {}, "A group's members get the roles the group has in projects (Members tab of a project)."),
    form, status,
    h("div", { class: "bar" }, searchBox(ctx, "Search groups", q)),
    items.length === 0 ? h("p", { class: "muted" }, q ? `No group matches “${q}”.` : "No groups.") :
      table([["Group", ""], ["Type", ""], ["LDAP DN", "wide-only"], [h("span", { class: "muted" }, "Actions"), ""]], rows, { id: "groups" }),
    pager(page, total, items.length));
}
