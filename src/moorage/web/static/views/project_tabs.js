// The header every project screen shares: breadcrumbs, name, access, and the tabs the caller may open.
import { h } from "../dom.js";

export const ROLES = { 1: "projectAdmin", 4: "maintainer", 2: "developer", 3: "guest", 5: "limitedGuest" };

export function visibility(project) {
  return project.public ? h("span", { class: "badge public" }, "public") : h("span", { class: "badge private" }, "private");
}

/** Members and logs are visible to guest and above (not limitedGuest), robots to maintainer and above; admins
 * see all; the immutability rules to whoever sees the project. */
export function projectHeader(ctx, project, current) {
  const role = project.current_user_role_id;
  const admin = Boolean(ctx.user?.sysadmin_flag);
  const base = `/projects/${encodeURIComponent(project.name)}`;
  const tabs = [["repositories", "Repositories", base, true],
    ["members", "Members", `${base}/members`, admin || [1, 2, 3, 4].includes(role)],
    ["robots", "Robot accounts", `${base}/robots`, admin || [1, 4].includes(role)],
    ["immutability", "Immutability", `${base}/immutability`, true],
    ["retention", "Retention", `${base}/retention`, admin || [1, 4].includes(role)],
    ["webhooks", "Webhooks", `${base}/webhooks`, admin || [1, 4].includes(role)],
    ["logs", "Logs", `${base}/logs`, admin || [1, 2, 3, 4].includes(role)]];
  return [
    h("div", { class: "crumbs" }, h("a", { href: "/projects" }, "Projects"), " / "),
    h("h1", {}, project.name, " ", visibility(project)),
    h("nav", { class: "tabs", "aria-label": "Project" }, tabs.filter((t) => t[3]).map(([key, label, href]) =>
      h("a", { href, "aria-current": key === current ? "page" : null }, label))),
  ];
}
