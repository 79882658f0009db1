// Pipeline view: turns as they happen, each a waterfall of its stages as they really ran.
// A stage stuck past its budget is marked "stalled" while it runs (stage_stalled); a turn cut
// short (a newer turn, a client that left, the Interrupt button) ends "interrupted".
import { el, extraFields, fmtBytes, fmtMs, renderValue, replaceChildren } from "./util.js";

const MAX_TURNS = 30;
const STAGE_KEYS = new Set(["conversation_id", "session_id", "turn", "stage", "status", "started_at",
  "duration_ms", "input_size", "output_size", "trace_id", "span_id", "error_type"]);
const END_KEYS = new Set(["conversation_id", "session_id", "turn", "status", "started_at",
  "duration_ms", "trace_id", "span_id", "stages", "end_reason", "interruption", "stalls"]);
const CONTENT_KEYS = new Set(["transcript", "response", "text"]);

export class PipelineView {
  constructor(ctx) {
    this.ctx = ctx;
    this.turns = new Map(); // conversation_id -> turn, insertion order = arrival order
    this.nodes = new Map();
    this.dirty = true;
    this.visible = false;
    this.meta = "";
    document.getElementById("turn-form").addEventListener("submit", (ev) => this.send(ev));
  }

  onOpen() {}

  turn(data) {
    let turn = this.turns.get(data.conversation_id);
    if (!turn) {
      turn = { id: data.conversation_id, session: data.session_id, number: data.turn,
        trace: data.trace_id, stages: new Map(), stalls: new Map(), end: null, changed: true };
      this.turns.set(data.conversation_id, turn);
      while (this.turns.size > MAX_TURNS) {
        const oldest = this.turns.keys().next().value;
        this.turns.delete(oldest);
      }
    }
    turn.changed = true;
    turn.trace = turn.trace || data.trace_id;
    return turn;
  }

  onFrame(frame) {
    if (frame.type === "pipeline_stage") {
      const turn = this.turn(frame.data);
      turn.stages.set(`${frame.data.stage}:${frame.data.span_id || turn.stages.size}`, frame.data);
      this.dirty = true;
    } else if (frame.type === "stage_stalled") {
      this.turn(frame.data).stalls.set(frame.data.stage, frame.data);
      this.dirty = true;
    } else if (frame.type === "conversation_end") {
      this.turn(frame.data).end = frame.data;
      this.dirty = true;
    }
  }

  setRate(rate, dropped) {
    const drop = dropped ? ` · ${dropped} messages dropped by the server (this page read too slowly)` : "";
    const text = `${rate.toFixed(0)} events/s · showing the last ${MAX_TURNS} turns${drop}`;
    if (text !== this.meta) {
      this.meta = text;
      document.getElementById("pipeline-meta").textContent = text;
    }
  }

  async send(ev) {
    ev.preventDefault();
    const input = document.getElementById("turn-text");
    const session = document.getElementById("turn-session").value.trim();
    const out = document.getElementById("turn-result");
    const data = { text: input.value };
    if (session) data.session_id = session;
    out.textContent = "Running the turn…";
    out.dataset.state = "running";
    try {
      const result = await this.ctx.conn.request("text_input", data);
      input.value = "";
      const label = result.interrupted ? "Turn interrupted before its answer was complete: " : "Turn done: ";
      replaceChildren(out, el("span", {}, label), renderValue(this.shown(result)));
      out.dataset.state = result.interrupted ? "interrupted" : "ok";
    } catch (err) {
      out.textContent = `Turn failed: ${err.message}`;
      out.dataset.state = "error";
    }
  }

  /** The result as the page may show it: conversation content only when capture is on. */
  shown(result) {
    if (this.ctx.config.capture_content) return result;
    return Object.fromEntries(Object.entries(result).map(([k, v]) =>
      CONTENT_KEYS.has(k) && typeof v === "string"
        ? [k, `${v.length} characters (content capture is off)`] : [k, v]));
  }

  async interrupt(session, out) {
    try {
      const result = await this.ctx.conn.request("interrupt", { session_id: session });
      out.textContent = result.interrupted ? "Interrupted." : "Nothing was running.";
    } catch (err) {
      out.textContent = `Interrupt failed: ${err.message}`;
    }
  }

  /** What a stalled stage says: how long it went without progress, against its budget. */
  stallNote(stall) {
    return `stalled: no progress for ${fmtMs(stall.idle_ms)} (budget ${fmtMs(stall.budget_ms)})`;
  }

  render() {
    const container = document.getElementById("turns");
    for (const [id, node] of this.nodes) {
      if (!this.turns.has(id)) { node.remove(); this.nodes.delete(id); }
    }
    if (!this.turns.size) {
      if (!container.firstChild) container.append(el("p", { class: "meta empty" }, "No turns yet: type one above or talk to the assistant."));
      return;
    }
    container.querySelector(".empty")?.remove();
    let previous = null; // newest first
    for (const turn of [...this.turns.values()].reverse()) {
      let node = this.nodes.get(turn.id);
      if (turn.changed || !node) {
        const fresh = this.renderTurn(turn);
        if (node) node.replaceWith(fresh);
        node = fresh;
        this.nodes.set(turn.id, node);
        turn.changed = false;
      }
      const want = previous ? previous.nextSibling : container.firstChild;
      if (want !== node) container.insertBefore(node, want);
      previous = node;
    }
  }

  renderTurn(turn) {
    const stages = [...turn.stages.values()].sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
    const starts = stages.map((s) => Date.parse(s.started_at));
    const t0 = Math.min(...starts, turn.end ? Date.parse(turn.end.started_at) : Infinity);
    const ends = stages.map((s, i) => starts[i] + s.duration_ms);
    const total = Math.max(1, ...ends.map((e) => e - t0), turn.end ? turn.end.duration_ms : 0);
    const plainStatus = turn.end ? turn.end.status : "running";
    const jaeger = this.ctx.config.jaeger_url;
    const trace = turn.trace
      ? (jaeger ? el("a", { href: `${jaeger}/trace/${turn.trace}`, target: "_blank", rel: "noopener" }, turn.trace)
        : el("code", {}, turn.trace))
      : el("span", { class: "nil" }, "no trace");
    const rows = stages.map((s, i) => {
      const left = ((starts[i] - t0) / total) * 100;
      const width = Math.max(0.5, (s.duration_ms / total) * 100);
      const extra = extraFields(s, STAGE_KEYS);
      return el("div", { class: "stage", "data-stage": s.stage, "data-status": s.status,
        "data-stalled": turn.stalls.has(s.stage) ? "true" : null },
        el("span", { class: "stage-name" }, s.stage),
        el("span", { class: "track" },
          el("span", { class: "wf-bar", style: `left:${left.toFixed(2)}%;width:${Math.min(width, 100 - left).toFixed(2)}%`,
            title: `${s.stage}: ${fmtMs(s.duration_ms)} from +${fmtMs(starts[i] - t0)}` })),
        el("span", { class: "stage-ms num" }, fmtMs(s.duration_ms)),
        el("span", { class: "stage-size" }, `${fmtBytes(s.input_size)} → ${fmtBytes(s.output_size)}`),
        el("span", { class: "stage-status" }, s.status + (s.error_type ? ` (${s.error_type})` : "")),
        turn.stalls.has(s.stage) ? el("span", { class: "stall" }, this.stallNote(turn.stalls.get(s.stage))) : null,
        extra ? el("div", { class: "stage-extra" }, renderValue(extra)) : null);
    });
    for (const [name, stall] of turn.stalls) { // still running: no pipeline_stage for it yet
      if (stages.some((s) => s.stage === name)) continue;
      rows.push(el("div", { class: "stage", "data-stage": name, "data-status": "stalled" },
        el("span", { class: "stage-name" }, name),
        el("span", { class: "stall" }, `${this.stallNote(stall)}, still running for ${fmtMs(stall.running_ms)}+`)));
    }
    const reason = turn.end?.end_reason;
    const interruption = turn.end?.interruption;
    const status = reason === "interrupted" ? "interrupted" : plainStatus;
    const why = interruption
      ? el("p", { class: "interruption" },
        `Interrupted by ${interruption.interrupted_by}: spoken ${interruption.spoken_sentences ?? 0} sentences`
        + ` (${interruption.spoken_chars ?? 0} of ${interruption.generated_chars ?? 0} characters written)`)
      : null;
    const note = el("span", { class: "meta", role: "status" });
    const stop = !turn.end && turn.session
      ? el("button", { type: "button", class: "interrupt", "aria-label": `Interrupt turn ${turn.number ?? ""} of session ${turn.session}`,
        onclick: () => this.interrupt(turn.session, note) }, "Interrupt")
      : null;
    const extra = turn.end ? extraFields(turn.end, END_KEYS) : null;
    return el("article", { class: "turn", "data-conversation": turn.id, "data-status": status },
      el("header", {},
        el("strong", {}, `Turn ${turn.number ?? "?"}`),
        el("span", { class: "badge", "data-status": status }, status),
        el("span", {}, `session ${turn.session ?? "–"}`),
        el("span", { class: "num" }, turn.end ? fmtMs(turn.end.duration_ms) : `${stages.length} stages so far`),
        el("span", {}, "trace ", trace), stop, note),
      why,
      el("div", { class: "waterfall", role: "list", "aria-label": `Stages of turn ${turn.number}` }, rows),
      extra ? el("details", { open: true }, el("summary", {}, "More about this turn"), renderValue(extra)) : null);
  }
}
