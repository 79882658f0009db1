// Small DOM and formatting helpers shared by the views (no framework: the page is small).

/** el("td", {class: "num"}, "12 ms") -> an element; attrs starting with "on" become listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function fmtMs(ms) {
  if (typeof ms !== "number" || !isFinite(ms)) return "–";
  if (ms >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

export function fmtBytes(n) {
  if (typeof n !== "number" || !isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function fmtPct(ratio) {
  return typeof ratio === "number" && isFinite(ratio) ? `${(ratio * 100).toFixed(1)} %` : "–";
}

export function fmtAge(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "never";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? String(iso ?? "–") : d.toLocaleTimeString();
}

/**
 * Any JSON value as a readable element: objects become key/value tables (nested), lists of
 * objects become tables, scalars become text. Used for fields the page does not know yet, so
 * new event fields show up without a redesign.
 */
export function renderValue(value, depth = 0) {
  if (value === null || value === undefined) return el("span", { class: "nil" }, "–");
  if (typeof value === "number") return el("span", { class: "num" }, Number.isInteger(value) ? value : value.toFixed(3));
  if (typeof value !== "object") return el("span", {}, String(value));
  if (depth > 4) return el("span", {}, JSON.stringify(value).slice(0, 200));
  if (Array.isArray(value)) {
    if (!value.length) return el("span", { class: "nil" }, "[]");
    if (value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
      const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
      return el("table", { class: "kv grid" },
        el("tr", {}, keys.map((k) => el("th", {}, k))),
        value.slice(0, 50).map((row) => el("tr", {}, keys.map((k) => el("td", {}, renderValue(row[k], depth + 1))))));
    }
    return el("span", {}, value.slice(0, 50).map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(", "));
  }
  return el("table", { class: "kv" },
    Object.entries(value).map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, renderValue(v, depth + 1)))));
}

/** The fields of ``obj`` not in ``known`` (a Set) and not null, or null when there are none. */
export function extraFields(obj, known) {
  const extra = Object.fromEntries(Object.entries(obj || {})
    .filter(([k, v]) => !known.has(k) && v !== null && v !== undefined));
  return Object.keys(extra).length ? extra : null;
}

export function replaceChildren(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}
