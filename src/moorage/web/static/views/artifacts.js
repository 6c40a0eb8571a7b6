// A repository's artifacts, and an artifact's page: pull commands, tags, layers, platforms, referrers.
// `project` is null for the project-less paths (/repositories/<full name>…; auth.mode: none), where
// `repo` is the full repository name.
import { get, list, repoPath, send } from "../api.js";
import { copyable, errorBox, fill, h, shortDigest, size, time } from "../dom.js";
import { listParams, pager, PAGE_SIZE, searchBox } from "./common.js";

function base(project, repo) {
  if (!project) return `/repositories/${repoPath(repo)}`;
  return `/projects/${encodeURIComponent(project)}/repositories/${repoPath(repo)}`;
}

function uiBase(project, repo) {
  if (!project) return `/repositories/${encodeURIComponent(repo)}`;
  return `/projects/${encodeURIComponent(project)}/repositories/${encodeURIComponent(repo)}`;
}

function fullName(project, repo) {
  return project ? `${project}/${repo}` : repo;
}

function crumbs(project, repo) {
  if (!project) {
    return h("div", { class: "crumbs" }, h("a", { href: "/repositories" }, "Repositories"), " / ",
      repo ? h("a", { href: uiBase(null, repo) }, repo) : null);
  }
  return h("div", { class: "crumbs" }, h("a", { href: "/projects" }, "Projects"), " / ",
    h("a", { href: `/projects/${encodeURIComponent(project)}` }, project), " / ",
    repo ? h("a", { href: uiBase(project, repo) }, repo) : null);
}

function tagBadges(tags) {
  return (tags || []).map((t) => h("span", { class: "badge tag" }, t.name));
}

export async function repositoryView(ctx, main, project, repo) {
  const { q, page } = listParams();
  // Harbor's q=tags=~<part>: the server filters and pages, so 10,000 tags cost one page of rows.
  const { items, total } = await list(`${base(project, repo)}/artifacts`, { page, page_size: PAGE_SIZE, q: q ? `tags=~${q}` : "" });
  const image = `${location.host}/${fullName(project, repo)}`;
  const latest = items.find((a) => (a.tags || []).length > 0);
  const rows = items.map((a) => h("tr", {},
    h("td", {}, h("a", { href: `${uiBase(project, repo)}/artifacts/${encodeURIComponent(a.digest)}`, class: "mono",
      title: a.digest }, shortDigest(a.digest))),
    h("td", {}, tagBadges(a.tags).length ? tagBadges(a.tags) : h("span", { class: "muted" }, "untagged")),
    h("td", { class: "num" }, size(a.size)),
    h("td", { class: "wide-only" }, a.references && a.references.length ? "index" : a.type === "IMAGE" ? "image" : a.artifact_type || a.media_type),
    h("td", { class: "wide-only" }, time(a.push_time))));
  fill(main,
    crumbs(project, null),
    h("h1", {}, fullName(project, repo)),
    latest ? copyable(`podman pull ${image}:${latest.tags[0].name}`, "pull command") : null,
    h("h2", {}, "Artifacts"),
    h("div", { class: "bar" }, searchBox(ctx, "Search tags", q)),
    items.length === 0
      ? h("p", { class: "muted" }, q ? `No artifact has a tag containing “${q}”.` : "No artifacts.")
      : h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Digest"), h("th", { scope: "col" }, "Tags"),
        // The API's artifact size is the manifest's own (Harbor's counts the layers too): say which it is.
        h("th", { scope: "col", class: "num" }, "Manifest size"), h("th", { scope: "col", class: "wide-only" }, "Type"),
        h("th", { scope: "col", class: "wide-only" }, "Pushed"))), h("tbody", {}, rows)),
    pager(page, total, items.length));
}

function table(head, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, head.map(([label, cls]) => h("th", { scope: "col", class: cls }, label)))),
    h("tbody", {}, rows));
}

async function section(title, load) {
  try {
    return [h("h2", {}, title), await load()];
  } catch (error) {
    return [h("h2", {}, title), errorBox(error)];
  }
}

/** The tags, each with a delete button when the caller's role allows deletes (the API decides anyway). */
function tagList(ctx, tags, canDelete, path) {
  if (!tags || tags.length === 0) return "untagged";
  const status = h("span", { "aria-live": "assertive" });
  return [tags.map((t) => {
    if (!canDelete) return h("span", { class: "badge tag" }, t.name);
    const remove = h("button", { type: "button", class: "inline-x", "aria-label": `Delete tag ${t.name}`, title: "Delete tag" }, "×");
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete tag ${t.name}? The artifact stays, reachable by digest.`)) return;
      try {
        await send("DELETE", `${path}/tags/${encodeURIComponent(t.name)}`);
        ctx.navigate(location.pathname, true);
      } catch (error) {
        fill(status, errorBox(error));
      }
    });
    return h("span", { class: "badge tag" }, t.name, " ", remove);
  }), status];
}

/** Add a tag to this artifact (push rights; never moves a tag that is on another artifact: the API answers 409). */
function addTagForm(ctx, path) {
  const status = h("div", { "aria-live": "assertive" });
  // The grammar is checked by the API (registry/names.py), whose 400 says what to write instead.
  const name = h("input", { type: "text", id: "new-tag", required: true, autocomplete: "off" });
  const form = h("form", { class: "inline", "aria-label": "Add a tag" },
    h("label", { for: "new-tag" }, "New tag "), name, h("button", { type: "submit" }, "Add tag"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(status);
    try {
      await send("POST", `${path}/tags`, { name: name.value.trim() });
      ctx.navigate(location.pathname, true);
    } catch (error) {
      fill(status, errorBox(error));
    }
  });
  return form;
}

export async function artifactView(ctx, main, project, repo, reference) {
  const path = `${base(project, repo)}/artifacts/${encodeURIComponent(reference)}`;
  const [artifact, info] = await Promise.all([get(path), project ? get(`/projects/${encodeURIComponent(project)}`) : {}]);
  // projectAdmin and maintainer may delete (docs/identity.md), as may system administrators.
  const canDelete = Boolean(ctx.user) && (Boolean(ctx.user.sysadmin_flag) || [1, 4].includes(info.current_user_role_id));
  // Adding a tag is a push (developer and above); the project-less read paths have no write API.
  const canTag = Boolean(project) && Boolean(ctx.user) && (Boolean(ctx.user.sysadmin_flag) || [1, 2, 4].includes(info.current_user_role_id));
  const image = `${location.host}/${fullName(project, repo)}`;
  const pulls = [
    ...(artifact.tags || []).map((t) => copyable(`podman pull ${image}:${t.name}`, `pull command for tag ${t.name}`)),
    copyable(`podman pull ${image}@${artifact.digest}`, "pull command by digest"),
  ];
  const isIndex = (artifact.references || []).length > 0;
  const [layers, platforms, history, referrers] = await Promise.all([
    isIndex ? null : section("Layers", async () => {
      const found = await get(`${path}/additions/layers`);
      if (found.length === 0) return h("p", { class: "muted" }, "No layers.");
      const total = found.reduce((sum, l) => sum + l.size, 0);
      return [h("p", { class: "muted", id: "layers-total" }, `${found.length} layers, ${size(total)} compressed in all`), table([["#", "num"], ["Digest", ""], ["Media type", "wide-only"], ["Size", "num"]],
        found.map((l, i) => h("tr", {}, h("td", { class: "num" }, i + 1),
          h("td", { class: "mono", title: l.digest }, shortDigest(l.digest)),
          h("td", { class: "wide-only mono" }, l.media_type),
          h("td", { class: "num", title: `${l.size} bytes` }, size(l.size)))))];
    }),
    isIndex ? section("Platforms", async () => {
      const found = await get(`${path}/additions/platforms`);
      return table([["Platform", ""], ["Manifest", ""], ["Size", "num"]], found.map((m) => h("tr", {},
        h("td", { class: "platform" }, [m.os, m.architecture, m.variant].filter(Boolean).join("/") || "unknown"),
        h("td", {}, h("a", { href: `${uiBase(project, repo)}/artifacts/${encodeURIComponent(m.digest)}`, class: "mono",
          title: m.digest }, shortDigest(m.digest))),
        h("td", { class: "num" }, size(m.size)))));
    }) : null,
    isIndex ? null : section("Build history", async () => {
      const found = await get(`${path}/additions/build_history`).catch((error) => {
        if (error.status === 404) return [];  // an artifact without an image configuration
        throw error;
      });
      if (found.length === 0) return h("p", { class: "muted" }, "No history in the image configuration.");
      return table([["Created", "wide-only"], ["Step", ""]], found.map((e) => h("tr", {},
        h("td", { class: "wide-only" }, time(e.created)),
        h("td", { class: "mono" }, e.created_by || e.comment || "", e.empty_layer ? h("span", { class: "muted" }, " (no layer)") : null))));
    }),
    section("Referrers", async () => {
      const { items } = await list(`${path}/accessories`, { page_size: 100 });
      if (items.length === 0) return h("p", { class: "muted" }, "No signatures, SBOMs or other artifacts refer to this one.");
      return table([["Type", ""], ["Digest", ""], ["Size", "num"]], items.map((a) => h("tr", {}, h("td", {}, a.type),
        h("td", {}, h("a", { href: `${uiBase(project, repo)}/artifacts/${encodeURIComponent(a.digest)}`, class: "mono",
          title: a.digest }, shortDigest(a.digest))), h("td", { class: "num" }, size(a.size)))));
    }),
  ]);
  fill(main,
    crumbs(project, repo),
    h("h1", { class: "mono" }, shortDigest(artifact.digest)),
    h("dl", { class: "facts" },
      h("dt", {}, "Digest"), h("dd", { class: "mono", id: "artifact-digest" }, artifact.digest),
      h("dt", {}, "Tags"), h("dd", {}, h("div", { id: "artifact-tags" }, tagList(ctx, artifact.tags, canDelete, path)),
        canTag ? addTagForm(ctx, path) : null),
      h("dt", {}, "Media type"), h("dd", { class: "mono" }, artifact.media_type),
      artifact.artifact_type ? [h("dt", {}, "Artifact type"), h("dd", { class: "mono" }, artifact.artifact_type)] : null,
      h("dt", {}, "Size"), h("dd", {}, size(artifact.size), " (manifest)"),
      h("dt", {}, "Pushed"), h("dd", {}, time(artifact.push_time))),
    h("h2", {}, "Pull"),
    h("div", { id: "pull-commands" }, pulls),
    layers, platforms, history, referrers);
}
