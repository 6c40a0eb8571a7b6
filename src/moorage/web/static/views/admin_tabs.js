// The header of the administration screens (system administrators only; the API refuses everyone else anyway).
import { h } from "../dom.js";

const TABS = [
  ["users", "Users", "/admin/users"],
  ["groups", "Groups", "/admin/groups"],
  ["jobs", "Jobs", "/admin/jobs"],
  ["registries", "Registries", "/admin/registries"],
  ["replication", "Replication", "/admin/replication"],
  ["gc", "Garbage collection", "/admin/gc"],
  ["audit", "Audit log", "/admin/audit"],
  ["system", "System", "/admin/system"],
];

export function adminHeader(title, current) {
  return [
    h("div", { class: "crumbs" }, "Administration"),
    h("h1", {}, title),
    h("nav", { class: "tabs", "aria-label": "Administration" }, TABS.map(([key, label, href]) =>
      h("a", { href, "aria-current": key === current ? "page" : null }, label))),
  ];
}
