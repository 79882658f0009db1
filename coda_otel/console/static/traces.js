// Traces: recent turns from the service's local trace store (whatever exporter is configured),
// searchable by session, status and duration; a click opens the turn's waterfall with each
// span's attributes and events, its latency breakdown, and links to Jaeger and its log.
// Turns that end while the view is open are added at the top from their conversation_end event.
import { el, fmtMs, fmtTime, renderValue, replaceChildren } from "./util.js";

const $ = (id) => document.getElementById(id);
const LIMIT = 100;
const STORED_AFTER_MS = 1000; // a turn that just ended is written to the store within ~0.5 s
const RETRY_MS = 400;
const RETRIES = 8;
const BREAKDOWN = "coda.latency.breakdown.";

/** The status a turn shows, from a conversation_end event (the store gives it already). */
function liveStatus(end) {
  if (end.status === "error") return "error";
  if (end.end_reason === "interrupted") return "interrupted";
  if (end.status === "cancelled") return "cancelled";
  return end.stalls && end.stalls.length ? "stalled" : "ok";
}

function fromEvent(end) {
  const v2v = end.latency?.voice_to_voice_us;
  return {
    trace_id: end.trace_id, session_id: end.session_id, turn: end.turn, start: end.started_at,
    duration_ms: end.duration_ms, status: liveStatus(end), end_reason: end.end_reason,
    stalled: Boolean(end.stalls && end.stalls.length),
    voice_to_voice_ms: typeof v2v === "number" ? v2v / 1000 : null,
    stages: Object.fromEntries((end.stages || []).map((s) => [s.stage, s.duration_ms])),
    arrived: performance.now(),
  };
}

export class TracesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.rows = [];
    this.filter = {};
    this.searched = false;
    this.openId = null;
    this.dirty = true;
    this.visible = false;
    $("trace-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.search(); });
  }

  onOpen() {}

  onFrame(frame) {
    if (frame.type !== "conversation_end" || !frame.data.trace_id || !this.searched) return;
    const row = fromEvent(frame.data);
    if (!this.matches(row) || this.rows.some((r) => r.trace_id === row.trace_id)) return;
    this.rows.unshift(row);
    this.rows.length = Math.min(this.rows.length, LIMIT);
    this.dirty = true;
  }

  matches(row) {
    const f = this.filter;
    if (f.session_id && row.session_id !== f.session_id) return false;
    if (f.status === "stalled" ? !row.stalled : f.status && row.status !== f.status) return false;
    return !(f.min_duration_ms && row.duration_ms < Number(f.min_duration_ms));
  }

  message(text) {
    $("trace-msg").textContent = text;
  }

  async search() {
    const filter = {
      session_id: $("trace-session").value.trim(), status: $("trace-status").value,
      min_duration_ms: $("trace-min").value.trim(),
    };
    const q = new URLSearchParams({ limit: String(LIMIT) });
    for (const [k, v] of Object.entries(filter)) if (v) q.set(k, v);
    this.message("Searching…");
    try {
      const body = await this.ctx.api.get(`traces?${q}`);
      this.filter = filter;
      this.rows = body.traces;
      this.searched = true;
      this.message(`${this.rows.length} turn${this.rows.length === 1 ? "" : "s"}${this.rows.length === LIMIT ? " (the newest)" : ""}.`);
    } catch (err) {
      this.message(`Search failed: ${err.message}`);
    }
    this.renderTable();
  }

  render() {
    if (!this.searched) {
      this.searched = true; // the first showing lists the newest turns
      this.search();
      return;
    }
    this.renderTable();
  }

  renderTable() {
    const head = el("tr", {}, ["Trace", "Session", "Turn", "Time", "Duration", "Voice-to-voice", "Status"]
      .map((h) => el("th", { scope: "col" }, h)));
    const rows = this.rows.map((r) => el("tr", { "data-trace": r.trace_id, "data-status": r.status,
      class: r.trace_id === this.openId ? "selected" : null },
      el("td", {}, el("button", { type: "button", class: "link", "aria-label": `Open trace ${r.trace_id}`,
        onclick: () => this.open(r.trace_id) }, el("code", {}, r.trace_id.slice(0, 12)), "…")),
      el("td", {}, r.session_id ?? el("span", { class: "nil" }, "–")),
      el("td", { class: "num" }, r.turn ?? "–"),
      el("td", { title: r.start }, fmtTime(r.start)),
      el("td", { class: "num" }, fmtMs(r.duration_ms)),
      el("td", { class: "num" }, fmtMs(r.voice_to_voice_ms)),
      el("td", {}, el("span", { class: "badge", "data-status": r.status }, r.status),
        r.stalled && r.status !== "stalled" ? el("span", { class: "badge", "data-status": "stalled" }, "stalled") : null)));
    const empty = this.rows.length ? null
      : el("tr", {}, el("td", { colspan: 7 }, "No stored turns match: change the filters, or run a turn."));
    replaceChildren($("trace-table"), head, rows, empty);
  }

  async open(traceId) {
    this.openId = traceId;
    this.renderTable();
    const out = $("trace-detail");
    replaceChildren(out, el("p", { class: "meta" }, `Loading trace ${traceId}…`));
    const row = this.rows.find((r) => r.trace_id === traceId);
    const wait = row?.arrived ? STORED_AFTER_MS - (performance.now() - row.arrived) : 0;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait)); // not in the store yet
    for (let attempt = 0; ; attempt += 1) {
      try {
        const body = await this.ctx.api.get(`traces/${traceId}`);
        if (this.openId === traceId) replaceChildren(out, this.renderTrace(body));
        return;
      } catch (err) {
        if (err.status === 404 && attempt < RETRIES) { // just ended: not written yet
          await new Promise((r) => setTimeout(r, RETRY_MS));
          continue;
        }
        replaceChildren(out, el("p", { class: "error" }, `Could not open the trace: ${err.message}`));
        return;
      }
    }
  }

  async showLog(traceId, node) {
    try {
      const log = await this.ctx.api.get(`traces/${traceId}/log`);
      replaceChildren(node, el("details", { open: true, class: "trace-log" },
        el("summary", {}, `Conversation log ${log.conversation_id ?? ""}`), renderValue(log)));
    } catch (err) {
      replaceChildren(node, el("p", { class: "error" }, `No conversation log: ${err.message}`));
    }
  }

  renderTrace(body) {
    const spans = body.spans;
    const summary = body.summary || {};
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const depth = (s) => {
      let d = 0;
      for (let p = byId.get(s.parent_span_id); p && d < 16; p = byId.get(p.parent_span_id)) d += 1;
      return d;
    };
    const total = Math.max(1, ...spans.map((s) => s.offset_ms + s.duration_ms));
    // the turn's root: "conversation" (it may sit under the request's SERVER span)
    const root = spans.find((s) => s.name === "conversation")
      || spans.find((s) => !s.parent_span_id) || spans[0];
    const jaeger = this.ctx.config.jaeger_url;
    const logNode = el("div", { class: "trace-log-out" });
    const rows = spans.map((s) => this.renderSpan(s, depth(s), total, s === root ? summary.status : null));
    return el("article", { class: "trace", "data-trace": body.trace_id, "data-status": summary.status },
      el("header", {},
        el("strong", {}, `Turn ${summary.turn ?? "?"}`),
        el("span", { class: "badge", "data-status": summary.status }, summary.status ?? "?"),
        el("span", {}, `session ${summary.session_id ?? "–"}`),
        el("span", {}, fmtTime(summary.start)),
        el("span", { class: "num" }, fmtMs(summary.duration_ms)),
        el("span", {}, "trace ", el("code", {}, body.trace_id)),
        jaeger ? el("a", { class: "jaeger", href: `${jaeger}/trace/${body.trace_id}`, target: "_blank", rel: "noopener" }, "Open in Jaeger") : null,
        el("button", { type: "button", class: "show-log", onclick: () => this.showLog(body.trace_id, logNode) }, "Conversation log")),
      summary.end_reason && summary.end_reason !== "completed"
        ? el("p", { class: "interruption" }, `Ended: ${summary.end_reason}${summary.error_type ? ` (${summary.error_type})` : ""}`) : null,
      root ? this.renderLatency(root.attributes || {}) : null,
      el("div", { class: "waterfall trace-waterfall", role: "list", "aria-label": "Spans of this turn" }, rows),
      logNode);
  }

  renderLatency(attrs) {
    const s = (key) => (typeof attrs[`coda.latency.${key}`] === "number" ? attrs[`coda.latency.${key}`] * 1000 : null);
    const v2v = s("voice_to_voice");
    if (v2v === null) return el("p", { class: "meta latency" }, "No latency breakdown (the turn ended before it spoke).");
    const parts = Object.entries(attrs).filter(([k]) => k.startsWith(BREAKDOWN))
      .map(([k, v]) => [k.slice(BREAKDOWN.length), v * 1000]);
    const sum = parts.reduce((a, [, ms]) => a + ms, 0) || 1;
    const rate = attrs["coda.latency.output_tokens_per_second"];
    return el("section", { class: "latency", "aria-label": "Latency breakdown" },
      el("p", {}, el("strong", {}, `Voice-to-voice ${fmtMs(v2v)}`), " = ",
        parts.flatMap(([name, ms], i) => [i ? " + " : "", el("span", { class: "part", "data-part": name }, `${name.replace(/_/g, " ")} ${fmtMs(ms)}`)])),
      el("div", { class: "stack", role: "img", "aria-label": "Voice-to-voice, part by part" },
        parts.map(([name, ms]) => el("span", { class: "seg", "data-part": name, title: `${name}: ${fmtMs(ms)}`,
          style: `width:${((ms / sum) * 100).toFixed(2)}%` }))),
      el("p", { class: "meta" }, `time to first token ${fmtMs(s("time_to_first_token"))} · time to first audio ${fmtMs(s("time_to_first_audio"))}`,
        typeof rate === "number" ? ` · ${rate.toFixed(1)} tokens/s` : ""));
  }

  /** One span: its bar (events as ticks) and, opened, its attributes and events. */
  renderSpan(s, depth, total, turnStatus = null) {
    const left = (s.offset_ms / total) * 100;
    const width = Math.max(0.4, (s.duration_ms / total) * 100);
    const status = turnStatus || (s.status?.code === "ERROR" ? "error" : (s.attributes?.["coda.stage.status"] || "ok"));
    const stalled = Boolean(s.attributes?.["coda.stage.stalled"]);
    const marks = (s.events || []).map((e) => el("span", { class: "ev-mark", "data-event": e.name,
      title: `${e.name} at +${fmtMs(e.offset_ms)}`, style: `left:${((e.offset_ms / total) * 100).toFixed(2)}%` }));
    const events = (s.events || []).length
      ? el("table", { class: "grid events" },
        el("tr", {}, ["Event", "At", "Attributes"].map((h) => el("th", { scope: "col" }, h))),
        s.events.map((e) => el("tr", { "data-event": e.name }, el("td", {}, e.name),
          el("td", { class: "num" }, `+${fmtMs(e.offset_ms)}`), el("td", {}, renderValue(e.attributes)))))
      : el("p", { class: "meta" }, "No events.");
    return el("details", { class: "span", role: "listitem", "data-span": s.name, "data-status": status,
      "data-stalled": stalled ? "true" : null },
      el("summary", { class: "stage", "data-stage": s.name, "data-status": status },
        el("span", { class: "stage-name", style: `padding-left:${depth * 0.8}rem` }, s.name),
        el("span", { class: "track" },
          el("span", { class: "wf-bar", style: `left:${left.toFixed(2)}%;width:${Math.min(width, 100 - left).toFixed(2)}%` }), marks),
        el("span", { class: "stage-ms num" }, fmtMs(s.duration_ms)),
        el("span", { class: "stage-size" }, `+${fmtMs(s.offset_ms)}`),
        el("span", { class: "stage-status" }, stalled ? `${status}, stalled` : status)),
      el("div", { class: "span-body" },
        el("h4", {}, "Attributes"), renderValue(s.attributes || {}),
        el("h4", {}, "Events"), events,
        s.status?.message ? el("p", { class: "error" }, s.status.message) : null));
  }
}
