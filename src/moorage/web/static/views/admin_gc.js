// Garbage collection (system administrators): the schedule (with cron), run now or dry run, history with each log.
import { get, list, send, text } from "../api.js";
import { fill, h, size, time } from "../dom.js";
import { adminHeader } from "./admin_tabs.js";
import { changes, listParams, pager, PAGE_SIZE, table } from "./common.js";

const TYPES = [["None", "No schedule"], ["Hourly", "Hourly"], ["Daily", "Daily (midnight UTC)"],
  ["Weekly", "Weekly (Sunday midnight UTC)"], ["Custom", "Custom cron"]];

function scheduleForm(schedule, act) {
  const current = schedule.schedule.type;
  const params = JSON.parse(schedule.job_parameters || "{}");
  const type = h("select", { id: "gc-type" },
    TYPES.map(([value, label]) => h("option", { value, selected: value === current }, label)));
  const cron = h("input", { type: "text", id: "gc-cron", value: current === "Custom" ? schedule.schedule.cron : "",
    placeholder: "0 3 * * *", "aria-describedby": "gc-cron-help", disabled: current !== "Custom" });
  type.addEventListener("change", () => { cron.disabled = type.value !== "Custom"; });
  const untagged = h("input", { type: "checkbox", id: "gc-untagged", checked: Boolean(params.delete_untagged) });
  const form = h("form", { class: "inline", "aria-label": "GC schedule" },
    h("label", { for: "gc-type" }, "Schedule "), type,
    h("label", { for: "gc-cron" }, "Cron "), cron,
    h("label", {}, untagged, " Delete untagged artifacts"),
    h("button", { type: "submit", class: "primary" }, "Save schedule"),
    h("span", { id: "gc-cron-help", class: "muted" }, "5 fields (minute hour day month weekday), UTC"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { schedule: { type: type.value, cron: type.value === "Custom" ? cron.value.trim() : null },
      parameters: { delete_untagged: untagged.checked } };
    act(() => send("PUT", "/system/gc/schedule", body));
  });
  return { form, untagged };
}

function run(act, untagged, dryRun) {
  const button = h("button", { type: "button", class: dryRun ? null : "primary" }, dryRun ? "Dry run" : "Run GC now");
  button.addEventListener("click", () => act(() => send("POST", "/system/gc/schedule",
    { schedule: { type: "Manual" }, parameters: { delete_untagged: untagged.checked, dry_run: dryRun } })));
  return button;
}

function logButton(execution) {
  const slot = h("div", { id: `gc-log-${execution.id}` });
  const button = h("button", { type: "button", "aria-expanded": "false", "aria-controls": `gc-log-${execution.id}`,
    "aria-label": `Log of GC run ${execution.id}` }, "Log");
  button.addEventListener("click", async () => {
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    if (open) { fill(slot); return; }
    try {
      fill(slot, h("pre", { class: "log", tabindex: "0", "aria-label": `Log of GC run ${execution.id}` }, await text(`/system/gc/${execution.id}/log`) || "(empty)"));
    } catch (error) {
      fill(slot, h("div", { class: "error", role: "alert" }, error.message));
    }
  });
  return [button, slot];
}

export async function gcView(ctx, main) {
  const { page } = listParams();
  const [schedule, { items, total }] = await Promise.all([get("/system/gc/schedule"),
    list("/system/gc", { page, page_size: PAGE_SIZE })]);
  const { status, act } = changes(ctx);
  const { form, untagged } = scheduleForm(schedule, act);
  const next = schedule.schedule.next_scheduled_time;
  const rows = items.map((e) => {
    const params = JSON.parse(e.job_parameters || "{}");
    return h("tr", {},
      h("td", { class: "num" }, h("a", { href: `/admin/jobs/${e.id}` }, e.id)),
      h("td", {}, e.job_kind === "MANUAL" ? "manual" : "scheduled", params.dry_run ? h("span", { class: "badge" }, "dry run") : null),
      h("td", { class: "gc-status" }, e.job_status),
      h("td", { class: "wide-only" }, time(e.start_time)),
      h("td", { class: "wide-only" }, time(e.end_time)),
      h("td", {}, `${e.summary.manifests} manifests, ${e.summary.blobs} blobs, ${size(e.summary.bytes_freed)}`),
      h("td", {}, logButton(e)));
  });
  fill(main,
    adminHeader("Garbage collection", "gc"),
    h("p", {}, "Deletes blobs and (optionally) untagged manifests no tag reaches, while pushes go on. ",
      next ? ["Next scheduled run: ", time(next), "."] : "No run is scheduled."),
    form,
    h("div", { class: "bar" }, run(act, untagged, false), run(act, untagged, true)),
    status,
    h("h2", {}, "History"),
    items.length === 0 ? h("p", { class: "muted" }, "GC has not run yet.") :
      table([["Run", "num"], ["Trigger", ""], ["Status", ""], ["Started", "wide-only"], ["Ended", "wide-only"],
        ["Deleted", ""], [h("span", { class: "muted" }, "Log"), ""]], rows, { id: "gc-history" }),
    pager(page, total, items.length));
}
