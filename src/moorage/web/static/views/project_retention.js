// A project's tag retention policy (project admins change and run it, maintainers read it): the rules,
// the schedule, a dry run or a real run now, and the history of runs with each repository's log.
import { get, list, send, text } from "../api.js";
import { errorBox, fill, h, time } from "../dom.js";
import { changes, stateBadge, table } from "./common.js";
import { projectHeader } from "./project_tabs.js";

function describe(rule, templates) {
  const template = templates.find((t) => t.rule_template === rule.template);
  const value = Object.values(rule.params || {})[0];
  const text = template ? template.display_text.replace("#", value ?? "") : rule.template;
  return text;
}

function pattern(selectors) {
  return (selectors || []).map((s) => `${s.decoration === "excludes" || s.decoration === "repoExcludes" ? "not " : ""}${s.pattern}`).join(", ") || "**";
}

function ruleForm(templates, onAdd) {
  const template = h("select", { id: "retention-template" }, templates.map((t) => h("option", { value: t.rule_template }, t.display_text)));
  const count = h("input", { type: "number", id: "retention-count", min: "0", value: "10", inputmode: "numeric" });
  const tags = h("input", { type: "text", id: "retention-tags", value: "**", autocomplete: "off" });
  const repos = h("input", { type: "text", id: "retention-repos", value: "**", autocomplete: "off" });
  const sync = () => { count.disabled = !(templates.find((t) => t.rule_template === template.value)?.params || []).length; };
  template.addEventListener("change", sync);
  sync();
  const form = h("form", { class: "inline", "aria-label": "New retention rule" },
    h("label", { for: "retention-template" }, "Rule "), template,
    h("label", { for: "retention-count" }, "# "), count,
    h("label", { for: "retention-tags" }, "Tags matching "), tags,
    h("label", { for: "retention-repos" }, "in repositories matching "), repos,
    h("button", { type: "submit", class: "primary" }, "Add rule"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = templates.find((t) => t.rule_template === template.value);
    const params = (chosen.params || []).length ? { [template.value]: Number(count.value) } : {};
    onAdd({ disabled: false, action: "retain", template: template.value, params,
      tag_selectors: [{ kind: "doublestar", decoration: "matches", pattern: tags.value.trim() || "**" }],
      scope_selectors: { repository: [{ kind: "doublestar", decoration: "repoMatches", pattern: repos.value.trim() || "**" }] } });
  });
  return form;
}

function tasksButton(policyId, execution) {
  const slot = h("div", { id: `retention-run-${execution.id}` });
  const button = h("button", { type: "button", "aria-expanded": "false", "aria-controls": slot.id,
    "aria-label": `Repositories of run ${execution.id}` }, "Repositories");
  button.addEventListener("click", async () => {
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    if (open) { fill(slot); return; }
    try {
      const base = `/retentions/${policyId}/executions/${execution.id}/tasks`;
      const { items } = await list(base, { page_size: 100 });
      const logs = await Promise.all(items.map((t) => text(`${base}/${t.id}`)));
      fill(slot, items.length === 0 ? h("p", { class: "muted" }, "No repository was evaluated.") :
        items.map((t, i) => h("div", {}, h("strong", {}, t.repository), ` — ${t.retained} of ${t.total} retained (${t.status})`,
          h("pre", { class: "log", tabindex: "0", "aria-label": `Log of ${t.repository}` }, logs[i] || "(empty)"))));
    } catch (error) {
      fill(slot, errorBox(error));
    }
  });
  return [button, slot];
}

export async function retentionView(ctx, main, name) {
  const project = await get(`/projects/${encodeURIComponent(name)}`);
  // metadata.retention_id (Harbor's) names the policy; without one there is none yet (no 404 to provoke).
  const retentionId = project.metadata && project.metadata.retention_id;
  const [meta, policy] = await Promise.all([get("/retentions/metadatas"),
    retentionId ? get(`/retentions/${encodeURIComponent(retentionId)}`) : null]);
  const manage = project.current_user_role_id === 1 || Boolean(ctx.user?.sysadmin_flag);
  const { status, act } = changes(ctx);
  const templates = meta.templates;
  const rules = policy ? policy.rules : [];
  const cron = policy ? (policy.trigger?.settings?.cron || "") : "";
  const save = (newRules, newCron) => {
    const body = { algorithm: "or", rules: newRules, trigger: { kind: "Schedule", settings: { cron: newCron } },
      scope: { level: "project", ref: project.project_id } };
    return policy ? send("PUT", `/retentions/${policy.id}`, body) : send("POST", "/retentions", body);
  };
  const rows = rules.map((rule, i) => {
    const cells = [h("td", {}, describe(rule, templates)), h("td", { class: "mono" }, pattern(rule.tag_selectors)),
      h("td", { class: "mono" }, pattern(rule.scope_selectors?.repository)), h("td", {}, stateBadge(!rule.disabled, "enabled", "disabled"))];
    if (manage) {
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete rule ${i + 1}` }, "Delete");
      remove.addEventListener("click", () => act(() => save(rules.filter((_, j) => j !== i), cron)));
      cells.push(h("td", {}, remove));
    }
    return h("tr", {}, cells);
  });
  let history = [];
  if (policy) {
    const { items } = await list(`/retentions/${policy.id}/executions`, { page_size: 15 });
    history = items.map((e) => h("tr", {},
      // A run is a retention.run job; only administrators may read the job table.
      h("td", { class: "num" }, ctx.user?.sysadmin_flag ? h("a", { href: `/admin/jobs/${e.id}` }, e.id) : e.id),
      h("td", {}, e.trigger.toLowerCase(), e.dry_run ? h("span", { class: "badge" }, "dry run") : null),
      h("td", { class: "retention-status" }, e.status),
      h("td", { class: "wide-only" }, time(e.start_time)),
      h("td", {}, tasksButton(policy.id, e))));
  }
  let controls = null;
  if (manage) {
    const cronInput = h("input", { type: "text", id: "retention-cron", value: cron, placeholder: "0 3 * * *", autocomplete: "off" });
    const schedule = h("form", { class: "inline", "aria-label": "Retention schedule" },
      h("label", { for: "retention-cron" }, "Run on cron (UTC, empty: only by hand) "), cronInput,
      h("button", { type: "submit" }, "Save schedule"));
    schedule.addEventListener("submit", (event) => { event.preventDefault(); act(() => save(rules, cronInput.value.trim())); });
    const run = (dryRun) => {
      const button = h("button", { type: "button", class: dryRun ? null : "danger", disabled: !policy }, dryRun ? "Dry run" : "Run now");
      button.addEventListener("click", () => {
        if (!dryRun && !window.confirm("Run retention now? Artifacts no rule retains are deleted.")) return;
        act(() => send("POST", `/retentions/${policy.id}/executions`, { dry_run: dryRun }));
      });
      return button;
    };
    controls = [ruleForm(templates, (rule) => act(() => save([...rules, rule], cron))), schedule,
      h("div", { class: "bar" }, run(true), run(false))];
  }
  fill(main,
    projectHeader(ctx, project, "retention"),
    h("p", {}, "An artifact is kept when any rule retains it; the others are deleted when the policy runs (a dry run only lists them). ",
      policy && policy.next_scheduled_time ? ["Next run: ", time(policy.next_scheduled_time), "."] : null),
    controls, status,
    h("h2", {}, "Rules"),
    rules.length === 0 ? h("p", { class: "muted" }, "No rules: the policy retains nothing (add one before running it).") :
      table([["Retain", ""], ["Tags", ""], ["Repositories", ""], ["Status", ""], ...(manage ? [[h("span", { class: "muted" }, "Actions"), ""]] : [])],
        rows, { id: "retention-rules" }),
    h("h2", {}, "Runs"),
    history.length === 0 ? h("p", { class: "muted" }, "The policy has not run yet.") :
      table([["Run", "num"], ["Trigger", ""], ["Status", ""], ["Started", "wide-only"], [h("span", { class: "muted" }, "Details"), ""]],
        history, { id: "retention-runs" }));
}
