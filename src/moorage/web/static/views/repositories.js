// Every repository the caller may see, by full name (GET /repositories): the home of an open registry
// (auth.mode: none), where there are no projects and names have one part ("alpine").
import { list } from "../api.js";
import { fill, h } from "../dom.js";
import { listParams, pager, PAGE_SIZE, repositoryTable, searchBox } from "./common.js";

export async function repositoriesView(ctx, main) {
  const { q, page } = listParams();
  const { items, total } = await list("/repositories", { page, page_size: PAGE_SIZE, q: q ? `name=~${q}` : "" });
  const open = ctx.mode !== "token";
  fill(main,
    h("h1", {}, open ? "Open registry" : "Repositories"),
    open ? [
      h("p", {}, "This registry runs with auth.mode: none: anyone may push and pull, there are no accounts and no projects."),
      h("div", { class: "pull" }, h("code", { tabindex: "0" }, `podman push --tls-verify=false <image> ${location.host}/<repository>:<tag>`)),
      h("div", { class: "pull" }, h("code", { tabindex: "0" }, `podman pull --tls-verify=false ${location.host}/<repository>:<tag>`)),
      h("h2", {}, "Repositories"),
    ] : null,
    h("div", { class: "bar" }, searchBox(ctx, "Search repositories", q)),
    repositoryTable(items, q, (r) => `/repositories/${encodeURIComponent(r.name)}`),
    pager(page, total, items.length));
}
