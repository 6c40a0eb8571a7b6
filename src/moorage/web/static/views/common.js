// Pieces the list views share: the page and query from the URL, a search box, a pager, the repository table.
import { h, time } from "../dom.js";

export const PAGE_SIZE = 15;

/** The list parameters in the current URL: {q, page}. */
export function listParams() {
  const params = new URLSearchParams(location.search);
  const page = Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1);
  return { q: params.get("q") || "", page };
}

function urlWith(changes) {
  const params = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    if (value === "" || value === null || value === undefined || (key === "page" && value === 1)) params.delete(key);
    else params.set(key, String(value));
  }
  const query = params.toString();
  return location.pathname + (query ? `?${query}` : "");
}

/** A search form that puts `q` in the URL (so the result can be linked and the back button works). */
export function searchBox(ctx, label, q) {
  const input = h("input", { type: "search", name: "q", value: q, "aria-label": label, placeholder: label });
  const form = h("form", { role: "search", class: "grow" }, input, " ", h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate(urlWith({ q: input.value.trim(), page: 1 }));
  });
  return form;
}

/** "16–30 of 42" with previous/next links; server-side paging (the API's page and X-Total-Count). */
export function pager(page, total, shown) {
  const first = total === 0 ? 0 : (page - 1) * PAGE_SIZE + 1;
  const last = (page - 1) * PAGE_SIZE + shown;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("span", {}, `${first}–${last} of ${total}`),
    page > 1 ? h("a", { href: urlWith({ page: page - 1 }), rel: "prev" }, "← Previous") : null,
    page < pages ? h("a", { href: urlWith({ page: page + 1 }), rel: "next" }, "Next →") : null);
}

/** A page of repositories (name linked by `href(r)`, artifact count, creation time), or why it is empty. */
export function repositoryTable(items, q, href) {
  if (items.length === 0) {
    return h("p", { class: "muted" }, q ? `No repository matches “${q}”.` : "No repositories yet: push an image to create one.");
  }
  const rows = items.map((r) => h("tr", {},
    h("td", {}, h("a", { href: href(r) }, r.name)),
    h("td", { class: "num" }, r.artifact_count),
    h("td", { class: "wide-only" }, time(r.creation_time))));
  return h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"),
    h("th", { scope: "col", class: "num" }, "Artifacts"), h("th", { scope: "col", class: "wide-only" }, "Created"))),
    h("tbody", {}, rows));
}

/** A status slot (errors are announced) and `act(work)`: run a change, then redraw the page, or go to the URL
 * `work` returns (or show why not). */
export function changes(ctx, redraw = () => ctx.navigate(location.pathname + location.search, true)) {
  const status = h("div", { "aria-live": "assertive" });
  const act = async (work) => {
    status.replaceChildren();
    try {
      const next = await work();
      if (typeof next === "string") ctx.navigate(next); else await redraw();
    } catch (error) {
      status.replaceChildren(h("div", { class: "error", role: "alert" }, error && error.message ? error.message : String(error)));
    }
  };
  return { status, act };
}

/** A table with a header row; `head` is [[label, class], …]. */
export function table(head, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, head.map(([label, cls]) => h("th", { scope: "col", class: cls }, label)))),
    h("tbody", {}, rows));
}

/** An on/off badge. */
export function stateBadge(on, yes, no) {
  return on ? h("span", { class: "badge public" }, yes) : h("span", { class: "badge private" }, no);
}
