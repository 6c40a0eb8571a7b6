// A project's tag immutability rules (everyone who sees the project reads them; projectAdmin and system
// administrators add, enable/disable and delete) and its Logs tab (guest and above).
import { get, list, send } from "../api.js";
import { fill, h } from "../dom.js";
import { changes, listParams, pager, PAGE_SIZE, stateBadge, table } from "./common.js";
import { auditTable } from "./admin_system.js";
import { projectHeader } from "./project_tabs.js";

function pattern(selectors) {
  return selectors && selectors[0] ? selectors[0].pattern : "";
}

function ruleBody(tag, repository, disabled) {
  return {
    disabled, action: "immutable", template: "immutable_template",
    tag_selectors: [{ kind: "doublestar", decoration: "matches", pattern: tag }],
    scope_selectors: { repository: [{ kind: "doublestar", decoration: "repoMatches", pattern: repository }] },
  };
}

export async function rulesView(ctx, main, name) {
  const project = await get(`/projects/${encodeURIComponent(name)}`);
  const base = `/projects/${encodeURIComponent(project.name)}/immutabletagrules`;
  const { items } = await list(base, { page_size: 100 });
  const manage = project.current_user_role_id === 1 || Boolean(ctx.user?.sysadmin_flag);
  const { status, act } = changes(ctx);
  const rows = items.map((r) => {
    const tag = pattern(r.tag_selectors);
    const repo = pattern(r.scope_selectors && r.scope_selectors.repository);
    const cells = [h("td", { class: "mono" }, tag), h("td", { class: "mono" }, repo), h("td", {}, stateBadge(!r.disabled, "enabled", "disabled"))];
    if (manage) {
      const toggle = h("button", { type: "button", "aria-label": `${r.disabled ? "Enable" : "Disable"} rule ${tag} in ${repo}` },
        r.disabled ? "Enable" : "Disable");
      toggle.addEventListener("click", () => act(() => send("PUT", `${base}/${r.id}`, { disabled: !r.disabled })));
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete rule ${tag} in ${repo}` }, "Delete");
      remove.addEventListener("click", () => act(() => send("DELETE", `${base}/${r.id}`)));
      cells.push(h("td", {}, h("div", { class: "bar" }, toggle, remove)));
    }
    return h("tr", {}, cells);
  });
  let form = null;
  if (manage) {
    const tag = h("input", { type: "text", id: "rule-tag", required: true, placeholder: "v*", autocomplete: "off" });
    const repo = h("input", { type: "text", id: "rule-repo", value: "**", required: true, autocomplete: "off" });
    form = h("form", { class: "inline", "aria-label": "New immutability rule" },
      h("label", { for: "rule-tag" }, "Tags matching "), tag,
      h("label", { for: "rule-repo" }, "in repositories matching "), repo,
      h("button", { type: "submit", class: "primary" }, "Add rule"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(() => send("POST", base, ruleBody(tag.value.trim(), repo.value.trim(), false)));
    });
  }
  fill(main,
    projectHeader(ctx, project, "immutability"),
    h("p", {}, "A tag a rule covers can be pushed once: it is never moved to another artifact nor deleted. Patterns are ",
      h("code", {}, "doublestar"), " globs: ", h("code", {}, "v*"), ", ", h("code", {}, "{latest,stable}"), ", ", h("code", {}, "team/**"), "."),
    form, status,
    items.length === 0 ? h("p", { class: "muted" }, "No immutability rules: every tag can be moved and deleted.") :
      table([["Tags", ""], ["Repositories", ""], ["Status", ""], ...(manage ? [[h("span", { class: "muted" }, "Actions"), ""]] : [])],
        rows, { id: "rules" }));
}

export async function projectLogsView(ctx, main, name) {
  const { page } = listParams();
  const project = await get(`/projects/${encodeURIComponent(name)}`);
  const { items, total } = await list(`/projects/${encodeURIComponent(project.name)}/logs`, { page, page_size: PAGE_SIZE });
  fill(main, projectHeader(ctx, project, "logs"), auditTable(items), pager(page, total, items.length));
}
