// Cache monitor: per cache hit ratio over time, time saved, entries, evictions by reason, and
// the recommendations in words.
import { LineChart } from "./chart.js";
import { el, extraFields, fmtMs, fmtPct, renderValue, replaceChildren } from "./util.js";

const $ = (id) => document.getElementById(id);
const HISTORY = 360; // samples kept per cache (30 min at the default 5 s interval)
const COLORS = ["#2a7ab0", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085"];
const CACHE_KEYS = new Set(["hits", "misses", "total", "hit_rate", "time_saved_ms", "evictions",
  "entries", "avg_load_ms", "maxsize", "ttl"]);

export class CacheView {
  constructor(ctx) {
    this.ctx = ctx;
    this.latest = null;
    this.times = [];
    this.history = new Map(); // cache name -> hit ratio at each of this.times
    this.dirty = true;
    this.visible = false;
    this.chart = new LineChart($("cache-chart"), ctx.charts, [], { yRange: [0, 1], yFormat: "percent" });
  }

  async onOpen() {
    try {
      this.add(await this.ctx.conn.request("get_cache_stats"));
    } catch { /* the periodic event comes anyway */ }
  }

  onFrame(frame) {
    if (frame.type === "cache_stats") this.add(frame.data);
  }

  add(data) {
    this.latest = data;
    const caches = data.stats?.cache_types || {};
    this.times.push(Date.now() / 1000);
    for (const name of Object.keys(caches)) {
      if (!this.history.has(name)) this.history.set(name, this.times.slice(0, -1).map(() => null));
    }
    for (const [name, ratios] of this.history) {
      const c = caches[name];
      ratios.push(c && c.total ? c.hit_rate : null); // no lookups yet: no ratio, a gap
      if (ratios.length > HISTORY) ratios.shift();
    }
    if (this.times.length > HISTORY) this.times.shift();
    this.dirty = true;
  }

  render() {
    const data = this.latest;
    if (!data) {
      $("cache-summary").textContent = "Waiting for the first cache statistics…";
      return;
    }
    const s = data.stats || {};
    $("cache-summary").textContent = `Overall: ${fmtPct(s.hit_rate)} hits (${s.hits ?? 0} of ${s.total ?? 0}), ` +
      `${fmtMs(s.time_saved_ms)} saved, ${s.entries ?? 0} entries, evictions: ${s.evictions?.size ?? 0} for size, ` +
      `${s.evictions?.expired ?? 0} expired.`;
    const names = [...this.history.keys()];
    this.chart.setSeries(names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length] })));
    this.chart.setData([this.times, ...names.map((n) => this.history.get(n))]);
    this.chart.resize();
    const caches = s.cache_types || {};
    replaceChildren($("cache-table"),
      el("tr", {}, ["Cache", "Hit ratio", "Hits", "Misses", "Time saved", "Entries", "Evicted (size)", "Expired", "Avg load", "More"]
        .map((h) => el("th", { scope: "col" }, h))),
      Object.entries(caches).map(([name, c]) => el("tr", { "data-cache": name },
        el("th", { scope: "row" }, name), el("td", { class: "num" }, fmtPct(c.hit_rate)),
        el("td", { class: "num" }, c.hits), el("td", { class: "num" }, c.misses),
        el("td", { class: "num" }, fmtMs(c.time_saved_ms)),
        el("td", { class: "num" }, `${c.entries}${c.maxsize ? ` / ${c.maxsize}` : ""}`),
        el("td", { class: "num" }, c.evictions?.size ?? 0), el("td", { class: "num" }, c.evictions?.expired ?? 0),
        el("td", { class: "num" }, fmtMs(c.avg_load_ms)),
        el("td", {}, renderValue(extraFields(c, CACHE_KEYS) ?? (c.ttl ? { ttl_s: c.ttl } : null))))));
    const recs = data.recommendations || [];
    replaceChildren($("cache-recs"), recs.length
      ? recs.map((r) => el("li", { "data-priority": r.priority ?? "info" },
        el("span", { class: "badge", "data-priority": r.priority ?? "info" }, r.priority ?? "info"), " ",
        r.message ?? JSON.stringify(r)))
      : el("li", {}, "No recommendations: the caches look well sized for the traffic so far."));
  }
}
