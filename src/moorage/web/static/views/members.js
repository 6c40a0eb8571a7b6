// A project's members: list for guest and above; add, change role and remove for projectAdmin.
import { get, list, send } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { listParams, pager, PAGE_SIZE } from "./common.js";
import { projectHeader, ROLES } from "./project_tabs.js";

function roleSelect(id, selected, label) {
  return h("select", { id, "aria-label": label },
    Object.entries(ROLES).map(([value, name]) => h("option", { value, selected: Number(value) === selected }, name)));
}

export async function membersView(ctx, main, name) {
  const { page } = listParams();
  const project = await get(`/projects/${encodeURIComponent(name)}`);
  const base = `/projects/${encodeURIComponent(project.name)}/members`;
  const { items, total } = await list(base, { page, page_size: PAGE_SIZE });
  const manage = project.current_user_role_id === 1 || Boolean(ctx.user?.sysadmin_flag);
  const status = h("div", { "aria-live": "assertive" });
  const reload = () => ctx.navigate(location.pathname + location.search, true);
  const act = async (work) => {
    fill(status);
    try {
      await work();
      reload();
    } catch (error) {
      fill(status, errorBox(error));
    }
  };
  const rows = items.map((m) => {
    const cells = [h("td", {}, m.entity_name, m.entity_type === "g" ? h("span", { class: "badge" }, "group") : null)];
    if (manage) {
      const select = roleSelect(`role-${m.id}`, m.role_id, `Role of ${m.entity_name}`);
      select.addEventListener("change", () => act(() => send("PUT", `${base}/${m.id}`, { role_id: Number(select.value) })));
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Remove ${m.entity_name}` }, "Remove");
      remove.addEventListener("click", () => act(() => send("DELETE", `${base}/${m.id}`)));
      cells.push(h("td", {}, select), h("td", {}, remove));
    } else {
      cells.push(h("td", {}, m.role_name));
    }
    return h("tr", {}, cells);
  });
  let form = null;
  if (manage) {
    const user = h("input", { type: "text", id: "member-name", required: true, autocomplete: "off" });
    const kind = h("select", { id: "member-kind" }, h("option", { value: "user" }, "a user"), h("option", { value: "group" }, "a group"));
    const nameLabel = h("label", { for: "member-name" }, "User name ");
    kind.addEventListener("change", () => { nameLabel.firstChild.textContent = kind.value === "group" ? "Group name " : "User name "; });
    form = h("form", { class: "inline", "aria-label": "Add a member" },
      h("label", { for: "member-kind" }, "Add "), kind, nameLabel, user,
      h("label", { for: "member-role" }, "Role "), roleSelect("member-role", 2, "Role"),
      h("button", { type: "submit", class: "primary" }, "Add member"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const role = Number(form.querySelector("#member-role").value);
      const name = user.value.trim();
      act(async () => {
        if (kind.value === "user") return send("POST", base, { role_id: role, member_user: { username: name } });
        // An existing group, found by name (the API would create a missing one; a typo must not).
        const { items: found } = await list("/usergroups/search", { groupname: name, page_size: 100 });
        const group = found.find((g) => g.group_name === name);
        if (!group) throw new Error(`no group is named “${name}”; an administrator creates groups (Administration → Groups)`);
        return send("POST", base, { role_id: role, member_group: { id: group.id } });
      });
    });
  }
  fill(main,
    projectHeader(ctx, project, "members"),
    form, status,
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Member"), h("th", { scope: "col" }, "Role"),
      manage ? h("th", { scope: "col" }, h("span", { class: "muted" }, "Actions")) : null)), h("tbody", {}, rows)),
    pager(page, total, items.length));
}
