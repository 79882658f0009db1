// Memory explorer: snapshot list, take a snapshot, diff any two, items per tier over time.
import { LineChart } from "./chart.js";
import { el, fmtBytes, fmtTime, renderValue, replaceChildren } from "./util.js";

const $ = (id) => document.getElementById(id);
const REFRESH_EVERY_MS = 1000; // snapshot events are batched into one list request

export class MemoryView {
  constructor(ctx) {
    this.ctx = ctx;
    this.snapshots = [];
    this.dirty = true;
    this.visible = false;
    this.stale = true;
    this.lastFetch = 0;
    this.pending = null;
    this.chart = new LineChart($("memory-chart"), ctx.charts, [
      { label: "short-term turns", stroke: "#2a7ab0" },
      { label: "long-term memories", stroke: "#c0392b" },
      { label: "topics", stroke: "#27ae60" },
    ]);
    $("snap-take").addEventListener("click", () => this.take());
    $("snap-diff").addEventListener("click", () => this.diff());
  }

  onOpen() {
    this.stale = true;
    this.dirty = true;
  }

  onFrame(frame) {
    if (frame.type === "memory_snapshot") {
      this.stale = true;
      this.dirty = true;
    }
  }

  message(text) {
    $("snap-msg").textContent = text;
  }

  async take() {
    this.message("Taking a snapshot…");
    try {
      const result = await this.ctx.conn.request("take_memory_snapshot");
      this.pending = result.snapshot_id; // written in the background: selected once listed
      this.message(`Snapshot ${result.snapshot_id} requested…`);
      await this.refresh();
    } catch (err) {
      this.message(`Snapshot failed: ${err.message}`);
    }
  }

  async refresh() {
    this.lastFetch = Date.now();
    this.stale = false;
    try {
      const body = await this.ctx.api.get("console/snapshots");
      this.snapshots = body.snapshots;
    } catch (err) {
      this.message(`Could not list snapshots: ${err.message}`);
    }
    this.renderList();
  }

  render() {
    if (this.stale) {
      if (Date.now() - this.lastFetch >= REFRESH_EVERY_MS) this.refresh();
      else this.dirty = true; // try again at the next tick
    }
    this.chart.resize();
  }

  renderList() {
    const snaps = this.snapshots;
    for (const [select, fallback] of [[$("snap-from"), snaps.length - 2], [$("snap-to"), snaps.length - 1]]) {
      const current = select.value;
      replaceChildren(select, snaps.map((s) => el("option", { value: s.snapshot_id },
        `${fmtTime(s.timestamp)} · ${s.trigger ?? "?"} · ${s.snapshot_id}`)));
      const wanted = snaps.some((s) => s.snapshot_id === current) ? current : snaps[Math.max(0, fallback)]?.snapshot_id;
      if (wanted) select.value = wanted;
    }
    replaceChildren($("snap-table"),
      el("tr", {}, ["Taken", "Trigger", "Turns (short-term)", "Memories (long-term)", "Topics", "Size", "Id"].map((h) => el("th", { scope: "col" }, h))),
      [...snaps].reverse().map((s) => el("tr", { "data-snapshot": s.snapshot_id },
        el("td", {}, fmtTime(s.timestamp)), el("td", {}, s.trigger ?? "–"),
        el("td", { class: "num" }, s.turn_count ?? "–"), el("td", { class: "num" }, s.memory_count ?? "–"),
        el("td", { class: "num" }, s.topic_count ?? "–"), el("td", { class: "num" }, fmtBytes(s.size)),
        el("td", {}, el("code", {}, s.snapshot_id), s.error ? el("span", { class: "error" }, ` ${s.error}`) : null))));
    if (this.pending && snaps.some((s) => s.snapshot_id === this.pending)) {
      $("snap-to").value = this.pending;
      this.message(`Snapshot ${this.pending} taken.`);
      this.pending = null;
    }
    if (!snaps.length) $("snap-table").append(el("tr", {}, el("td", { colspan: 7 }, "No snapshots yet: press Take snapshot.")));
    const usable = snaps.filter((s) => !s.error);
    this.chart.setData([
      usable.map((s) => Date.parse(s.timestamp) / 1000),
      usable.map((s) => s.turn_count),
      usable.map((s) => s.memory_count),
      usable.map((s) => s.topic_count),
    ]);
  }

  async diff() {
    const from = $("snap-from").value;
    const to = $("snap-to").value;
    const out = $("snap-diff-out");
    if (!from || !to) {
      replaceChildren(out, el("p", { class: "meta" }, "Take at least one snapshot first."));
      return;
    }
    try {
      const q = new URLSearchParams({ from, to });
      const d = await this.ctx.api.get(`console/diff?${q}`);
      replaceChildren(out, renderDiff(d));
    } catch (err) {
      replaceChildren(out, el("p", { class: "error" }, `Diff failed: ${err.message}`));
    }
  }
}

function memoryList(title, memories, kind) {
  return el("section", { class: `diff-${kind}` },
    el("h3", {}, `${title} (${memories.length})`),
    memories.length
      ? el("ul", {}, memories.map((m) => el("li", { "data-memory": m.id ?? "" },
        el("span", { class: "content" }, m.content ?? JSON.stringify(m)),
        el("span", { class: "meta" }, ` · id ${m.id ?? "–"}`,
          m.importance !== undefined ? ` · importance ${m.importance}` : "",
          m.topics && m.topics.length ? ` · topics ${m.topics.join(", ")}` : ""))))
      : el("p", { class: "meta" }, "none"));
}

function renderDiff(d) {
  const summary = Object.entries(d.summary || {}).map(([k, v]) =>
    el("li", {}, `${k.replace(/_/g, " ")}: ${v.before} → ${v.after}`));
  return el("div", {},
    el("p", { class: "meta" }, `${d.snapshot_id1} → ${d.snapshot_id2} · content: ${d.content}`),
    el("ul", { class: "summary" }, summary),
    memoryList("Memories added", d.new_memories || [], "added"),
    memoryList("Memories removed", d.removed_memories || [], "removed"),
    el("section", { class: "diff-changed" }, el("h3", {}, `Memories changed (${(d.changed_memories || []).length})`),
      (d.changed_memories || []).length ? renderValue(d.changed_memories) : el("p", { class: "meta" }, "none")),
    el("section", { class: "diff-topics" }, el("h3", {}, "Topics"),
      el("p", {}, `added: ${(d.topics_added || []).join(", ") || "none"}`),
      el("p", {}, `removed: ${(d.topics_removed || []).join(", ") || "none"}`)),
    el("section", { class: "diff-turns" }, el("h3", {}, `Short-term turns added (${(d.new_turns || []).length})`),
      (d.new_turns || []).length ? renderValue(d.new_turns) : el("p", { class: "meta" }, "none")));
}
