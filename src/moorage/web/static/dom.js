// Small DOM helpers: every piece of registry data goes in as text (never as HTML).

/** Build an element: h("a", {href: "/x", onclick: fn}, "text", child). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace the children of `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 -> "1.5 KiB". */
export function size(bytes) {
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** An ISO time as the reader's local date and time, with the exact value in the title. */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const when = new Date(iso);
  return h("time", { datetime: iso, title: iso }, Number.isNaN(when.getTime()) ? iso : when.toLocaleString());
}

/** "sha256:0123456789abcdef…" -> "sha256:0123456789ab". */
export function shortDigest(digest) {
  const [alg, hex] = String(digest).split(":");
  return hex ? `${alg}:${hex.slice(0, 12)}` : String(digest);
}

/** Copy `text`; the Clipboard API needs a secure context, else the selection fallback. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = h("textarea", { "aria-hidden": "true", style: "position:fixed;left:-9999px" });
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

/** A read-only command with a button that copies it and says so. */
export function copyable(text, label) {
  const button = h("button", { type: "button", "aria-label": `Copy ${label}` }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await copyText(text);
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
  // tabindex: on a narrow screen the command scrolls sideways, and a keyboard user must be able to scroll it.
  return h("div", { class: "pull" }, h("code", { "aria-label": label, tabindex: "0" }, text), button);
}

/** An error box with the API's message (which says what to do). */
export function errorBox(error) {
  return h("div", { class: "error", role: "alert" }, error && error.message ? error.message : String(error));
}
