// Jobs (system administrators): the job table newest first, filtered by state and kind, paged by id on the
// server (GET /api/v2.0/jobs?before=), each job with its payload and last error; a GC run links to its log.
import { get } from "../api.js";
import { fill, h, time } from "../dom.js";
import { adminHeader } from "./admin_tabs.js";
import { PAGE_SIZE, table } from "./common.js";

const STATES = ["queued", "running", "succeeded", "failed"];

function stateBadge(state) {
  const cls = state === "failed" ? "badge failed" : state === "succeeded" ? "badge public" : "badge";
  return h("span", { class: cls }, state);
}

function filters(ctx, params) {
  const state = h("select", { id: "job-state", name: "state" }, h("option", { value: "" }, "any state"),
    STATES.map((s) => h("option", { value: s, selected: s === params.get("state") }, s)));
  const kind = h("input", { type: "text", id: "job-kind", name: "kind", value: params.get("kind") || "", placeholder: "gc.run" });
  const form = h("form", { class: "inline", "aria-label": "Filter jobs" },
    h("label", { for: "job-state" }, "State "), state, h("label", { for: "job-kind" }, "Kind "), kind,
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams(Object.entries({ state: state.value, kind: kind.value.trim() }).filter(([, v]) => v));
    ctx.navigate(`/admin/jobs${query.toString() ? `?${query}` : ""}`);
  });
  return form;
}

export async function jobsView(ctx, main) {
  const params = new URLSearchParams(location.search);
  const query = { limit: PAGE_SIZE, state: params.get("state"), kind: params.get("kind"), before: params.get("before") };
  const { jobs, counts, next_before: nextBefore } = await get("/jobs", query);
  const rows = jobs.map((j) => h("tr", {},
    h("td", { class: "num" }, h("a", { href: `/admin/jobs/${j.id}` }, j.id)),
    h("td", { class: "mono" }, j.kind),
    h("td", {}, stateBadge(j.state)),
    h("td", { class: "num wide-only" }, `${j.attempts}/${j.max_attempts}`),
    h("td", { class: "wide-only" }, time(j.created_at)),
    h("td", { class: "job-error" }, j.last_error ? h("span", { class: "error-text" }, j.last_error.split("\n")[0].slice(0, 160)) : "")));
  const older = new URLSearchParams(location.search);
  if (nextBefore) older.set("before", nextBefore);
  const newest = new URLSearchParams(location.search);
  newest.delete("before");
  fill(main,
    adminHeader("Jobs", "jobs"),
    h("p", { class: "muted", id: "job-counts" }, STATES.map((s) => `${counts[s] || 0} ${s}`).join(" · ")),
    filters(ctx, params),
    jobs.length === 0 ? h("p", { class: "muted" }, "No jobs match.") :
      table([["Job", "num"], ["Kind", ""], ["State", ""], ["Attempts", "num wide-only"], ["Created", "wide-only"], ["Last error", ""]], rows),
    h("nav", { class: "pager", "aria-label": "Pages" },
      params.get("before") ? h("a", { href: `/admin/jobs${newest.toString() ? `?${newest}` : ""}` }, "← Newest") : null,
      nextBefore ? h("a", { href: `/admin/jobs?${older}`, rel: "next" }, "Older →") : null));
}

export async function jobView(ctx, main, id) {
  const job = await get(`/jobs/${encodeURIComponent(id)}`);
  const isGc = job.kind === "gc.run";
  fill(main,
    h("div", { class: "crumbs" }, "Administration / ", h("a", { href: "/admin/jobs" }, "Jobs"), " / "),
    h("h1", {}, `Job ${job.id}`),
    h("dl", { class: "facts" },
      h("dt", {}, "Kind"), h("dd", { class: "mono" }, job.kind),
      h("dt", {}, "State"), h("dd", { id: "job-state-value" }, stateBadge(job.state)),
      h("dt", {}, "Attempts"), h("dd", {}, `${job.attempts} of ${job.max_attempts}`),
      h("dt", {}, "Created"), h("dd", {}, time(job.created_at)),
      h("dt", {}, "Run after"), h("dd", {}, time(job.run_after)),
      h("dt", {}, "Finished"), h("dd", {}, time(job.finished_at)),
      job.lease_owner ? [h("dt", {}, "Node"), h("dd", { class: "mono" }, job.lease_owner)] : null),
    h("h2", {}, "Last error"),
    job.last_error ? h("pre", { class: "log", id: "job-error", tabindex: "0", "aria-label": "Last error" }, job.last_error)
      : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Payload"),
    h("pre", { class: "log", tabindex: "0", "aria-label": "Payload" }, JSON.stringify(job.payload, null, 2)),
    isGc ? h("p", {}, "This is a garbage collection run: its log is on the ", h("a", { href: "/admin/gc" }, "GC screen"), ".") : null);
}
