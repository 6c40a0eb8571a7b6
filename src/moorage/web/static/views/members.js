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
    const cells = [h("td", {}, m.entity_name)];
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
    form = h("form", { class: "inline", "aria-label": "Add a member" },
      h("label", { for: "member-name" }, "User name "), user,
      h("label", { for: "member-role" }, "Role "), roleSelect("member-role", 2, "Role"),
      h("button", { type: "submit", class: "primary" }, "Add member"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const role = Number(form.querySelector("#member-role").value);
      act(() => send("POST", base, { role_id: role, member_user: { username: user.value.trim() } }));
    });
  }
  fill(main,
    projectHeader(ctx, project, "members"),
    form, status,
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Role"),
      manage ? h("th", { scope: "col" }, h("span", { class: "muted" }, "Actions")) : null)), h("tbody", {}, rows)),
    pager(page, total, items.length));
}
