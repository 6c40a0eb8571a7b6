// Registry endpoints (system administrators): the registries replication and proxy-cache projects talk to.
// The secret is write-only (the API answers *****); "Test" asks the registry itself and shows what is wrong.
import { get, list, send } from "../api.js";
import { errorBox, fill, h, time } from "../dom.js";
import { adminHeader } from "./admin_tabs.js";
import { changes, listParams, pager, PAGE_SIZE, table } from "./common.js";

function createForm(types, act) {
  const field = (id, label, attrs = {}) => [h("label", { for: id }, `${label} `), h("input", { type: "text", id, autocomplete: "off", ...attrs })];
  const type = h("select", { id: "registry-type" }, types.map((t) => h("option", { value: t }, t)));
  const insecure = h("input", { type: "checkbox", id: "registry-insecure" });
  const form = h("form", { class: "inline", "aria-label": "New registry endpoint" },
    field("registry-name", "Name", { required: true }),
    h("label", { for: "registry-type" }, "Type "), type,
    field("registry-url", "URL", { required: true, placeholder: "scheme and host, e.g. https: …" }),
    field("registry-user", "Access key"),
    h("label", { for: "registry-secret" }, "Secret "), h("input", { type: "password", id: "registry-secret", autocomplete: "new-password" }),
    h("label", {}, insecure, " Skip TLS verification"),
    h("button", { type: "submit", class: "primary" }, "Add registry"));
  const value = (id) => form.querySelector(`#${id}`).value.trim();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const credential = value("registry-user") ? { type: "basic", access_key: value("registry-user"), access_secret: form.querySelector("#registry-secret").value } : null;
    act(() => send("POST", "/registries", { name: value("registry-name"), type: type.value, url: value("registry-url"),
      credential, insecure: insecure.checked }));
  });
  return form;
}

export async function registriesView(ctx, main) {
  const { page } = listParams();
  const [{ items, total }, types] = await Promise.all([list("/registries", { page, page_size: PAGE_SIZE }), get("/replication/adapters")]);
  const { status, act } = changes(ctx);
  const rows = items.map((r) => {
    const result = h("span", { "aria-live": "polite", class: "ping-result" });
    const test = h("button", { type: "button", "aria-label": `Test ${r.name}` }, "Test");
    test.addEventListener("click", async () => {
      fill(result, "testing…");
      try {
        await send("POST", "/registries/ping", { id: r.id });
        fill(result, h("span", { class: "badge public" }, "reachable"));
      } catch (error) {
        fill(result, errorBox(error));
      }
    });
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${r.name}` }, "Delete");
    remove.addEventListener("click", () => {
      if (!window.confirm(`Delete registry endpoint ${r.name}?`)) return;
      act(() => send("DELETE", `/registries/${r.id}`));
    });
    return h("tr", {},
      h("td", {}, r.name),
      h("td", {}, r.type),
      h("td", { class: "mono" }, r.url, r.insecure ? h("span", { class: "badge" }, "insecure") : null),
      h("td", { class: "wide-only" }, r.credential.access_key || h("span", { class: "muted" }, "anonymous")),
      h("td", { class: "wide-only" }, time(r.creation_time)),
      h("td", {}, h("div", { class: "bar" }, test, remove), result));
  });
  fill(main,
    adminHeader("Registries", "registries"),
    h("p", {}, "Other registries this one replicates from or to, and that proxy-cache projects pull through."),
    createForm(types, act), status,
    items.length === 0 ? h("p", { class: "muted" }, "No registry endpoints.") :
      table([["Name", ""], ["Type", ""], ["URL", ""], ["Access key", "wide-only"], ["Created", "wide-only"],
        [h("span", { class: "muted" }, "Actions"), ""]], rows, { id: "registries" }),
    pager(page, total, items.length));
}
