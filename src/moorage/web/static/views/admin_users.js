// Users (system administrators): search and paging on the server, create, admin role, disable/enable, delete.
import { list, send } from "../api.js";
import { fill, h, time } from "../dom.js";
import { adminHeader } from "./admin_tabs.js";
import { changes, listParams, pager, PAGE_SIZE, searchBox, stateBadge, table } from "./common.js";

function createForm(act) {
  const name = h("input", { type: "text", id: "new-user-name", required: true, autocomplete: "off" });
  const password = h("input", { type: "password", id: "new-user-password", required: true, autocomplete: "new-password" });
  const email = h("input", { type: "text", id: "new-user-email", autocomplete: "off", inputmode: "email" });
  const admin = h("input", { type: "checkbox", id: "new-user-admin" });
  const form = h("form", { class: "inline", "aria-label": "New user" },
    h("label", { for: "new-user-name" }, "User name "), name,
    h("label", { for: "new-user-password" }, "Password "), password,
    h("label", { for: "new-user-email" }, "Email "), email,
    h("label", {}, admin, " System administrator"),
    h("button", { type: "submit", class: "primary" }, "Create user"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(async () => {
      const username = name.value.trim();
      await send("POST", "/users", { username, password: password.value, email: email.value.trim() || null });
      if (admin.checked) {
        const [created] = (await list("/users", { username, page_size: 100 })).items.filter((u) => u.username === username);
        if (created) await send("PUT", `/users/${created.user_id}/sysadmin`, { sysadmin_flag: true });
      }
      return `/admin/users?q=${encodeURIComponent(username)}`;  // show the new user
    });
  });
  return form;
}

export async function usersView(ctx, main) {
  const { q, page } = listParams();
  const { items, total } = await list("/users", { page, page_size: PAGE_SIZE, username: q });
  const { status, act } = changes(ctx);
  const me = ctx.user?.user_id;
  const rows = items.map((u) => {
    const admin = h("button", { type: "button", "aria-label": `${u.sysadmin_flag ? "Revoke administrator from" : "Make administrator"} ${u.username}` },
      u.sysadmin_flag ? "Revoke admin" : "Make admin");
    admin.addEventListener("click", () => act(() => send("PUT", `/users/${u.user_id}/sysadmin`, { sysadmin_flag: !u.sysadmin_flag })));
    const toggle = h("button", { type: "button", "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.username}` },
      u.disabled ? "Enable" : "Disable");
    toggle.addEventListener("click", () => act(() => send("PUT", `/users/${u.user_id}/disabled`, { disabled: !u.disabled })));
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${u.username}` }, "Delete");
    remove.addEventListener("click", () => {
      if (!window.confirm(`Delete user ${u.username}? Their memberships go with them; audit rows stay.`)) return;
      act(() => send("DELETE", `/users/${u.user_id}`));
    });
    const builtIn = u.username === "admin" || u.user_id === me;  // the API refuses these anyway
    return h("tr", {},
      h("td", {}, u.username, u.user_id === me ? h("span", { class: "muted" }, " (you)") : null),
      h("td", {}, u.sysadmin_flag ? h("span", { class: "badge tag" }, "admin") : h("span", { class: "muted" }, "user")),
      h("td", {}, stateBadge(!u.disabled, "enabled", "disabled")),
      h("td", { class: "wide-only" }, u.email || ""),
      h("td", { class: "wide-only" }, time(u.creation_time)),
      h("td", {}, h("div", { class: "bar" }, builtIn ? null : [admin, toggle, remove])));
  });
  fill(main,
    adminHeader("Users", "users"),
    createForm(act), status,
    h("div", { class: "bar" }, searchBox(ctx, "Search users", q)),
    items.length === 0 ? h("p", { class: "muted" }, q ? `No user matches “${q}”.` : "No users.") :
      table([["User", ""], ["Role", ""], ["Status", ""], ["Email", "wide-only"], ["Created", "wide-only"],
        [h("span", { class: "muted" }, "Actions"), ""]], rows),
    pager(page, total, items.length));
}
