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

/** Milliseconds for people: "0.42 ms", "12.3 ms", "812 ms", "1.25 s", "42.1 s", "3 min 5 s". */
export function fmtMs(ms) {
  if (typeof ms !== "number" || !isFinite(ms)) return "–";
  const abs = Math.abs(ms);
  if (abs < 1) return `${ms.toFixed(2)} ms`;
  if (abs < 100) return `${ms.toFixed(1)} ms`;
  if (abs < 1000) return `${ms.toFixed(0)} ms`;
  if (abs < 10000) return `${(ms / 1000).toFixed(2)} s`;
  if (abs < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
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

/** A moment (ISO text, or Unix seconds) as local time; the date too when it is not today. */
export function fmtTime(when) {
  const d = typeof when === "number" ? new Date(when * 1000) : new Date(when);
  if (when === null || when === undefined || isNaN(d)) return String(when ?? "–");
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

// Field names that say what unit a number is in; a plain number elsewhere stays a number.
const UNIT_RULES = [
  [/^coda\.latency\.(?!output_tokens)/, (v) => fmtMs(v * 1000)], // span attributes: seconds
  [/(^|_)us$/, (v) => fmtMs(v / 1000)],
  [/(^|_)ms$/, (v) => fmtMs(v)],
  [/(^|_)(s|seconds)$/, (v) => fmtMs(v * 1000)],
  [/(^|_)(bytes|size|memory_usage)$/, (v) => fmtBytes(v)],
  [/(^|_)(at|time|timestamp|accessed|created|updated)$/, (v) => (v > 1e9 && v < 1e11 ? fmtTime(v) : null)],
];
const hasUnit = (key) => UNIT_RULES.some(([pattern]) => pattern.test(key));
/** The name that says a child's unit: its own, else its parent's ({"breakdown_us": {"llm": 5}}). */
const unitKey = (parent, key) => (!hasUnit(key) && hasUnit(parent) ? parent : key);

/** A field's name without the unit suffix its value now shows ("voice_to_voice_us" -> "voice_to_voice"). */
function label(key, value) {
  return fmtField(key, value) !== null ? key.replace(/_(us|ms|s|seconds)$/, "") : key;
}

/** A number shown with the unit its field name implies ("voice_to_voice_us" -> "142 ms"). */
export function fmtField(key, value) {
  if (typeof value !== "number" || !isFinite(value) || !key) return null;
  for (const [pattern, format] of UNIT_RULES) {
    if (pattern.test(key)) {
      const text = format(value);
      if (text !== null) return text;
    }
  }
  return null;
}

/**
 * Any JSON value as a readable element: objects become key/value tables (nested), lists of
 * objects become tables, scalars become text. Used for fields the page does not know yet, so
 * new event fields show up without a redesign.
 */
export function renderValue(value, depth = 0, key = "") {
  if (value === null || value === undefined) return el("span", { class: "nil" }, "–");
  if (typeof value === "number") {
    const human = fmtField(key, value);
    if (human !== null) return el("span", { class: "num", title: String(value) }, human);
    return el("span", { class: "num" }, Number.isInteger(value) ? value : value.toFixed(3));
  }
  if (typeof value !== "object") return el("span", {}, String(value));
  if (depth > 4) return el("span", {}, JSON.stringify(value).slice(0, 200));
  if (Array.isArray(value)) {
    if (!value.length) return el("span", { class: "nil" }, "[]");
    if (value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
      const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
      return el("table", { class: "kv grid" },
        el("tr", {}, keys.map((k) => el("th", {}, k))),
        value.slice(0, 50).map((row) => el("tr", {}, keys.map((k) => el("td", {}, renderValue(row[k], depth + 1, unitKey(key, k)))))));
    }
    return el("span", {}, value.slice(0, 50).map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(", "));
  }
  return el("table", { class: "kv" },
    Object.entries(value).map(([k, v]) => el("tr", {}, el("th", { scope: "row", title: k }, label(k, v)),
      el("td", {}, renderValue(v, depth + 1, unitKey(key, k))))));
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
