// Health: each component's status, heartbeat age, restarts and leak suspicion; reset a failed
// component; fault injection (only when the service allows it); the debugging switches.
import { el, fmtAge, fmtBytes, replaceChildren } from "./util.js";

const $ = (id) => document.getElementById(id);

export class HealthView {
  constructor(ctx) {
    this.ctx = ctx;
    this.status = null;
    this.receivedAt = 0;
    this.overall = null;
    this.dirty = true;
    this.visible = false;
    $("faults").hidden = !ctx.config.allow_fault_injection;
    $("fault-inject").addEventListener("click", () => this.inject());
    for (const box of document.querySelectorAll("#switches input")) {
      box.addEventListener("change", () => this.toggle(box));
    }
    this.showSwitches(ctx.config.debugging);
  }

  async onOpen() {
    try {
      this.update(await this.ctx.conn.request("get_health_status"));
    } catch { /* the periodic event comes anyway */ }
  }

  onFrame(frame) {
    if (frame.type === "health_status") this.update(frame.data);
  }

  update(status) {
    this.status = status;
    this.receivedAt = performance.now();
    this.overall = status.overall_health;
    const select = $("fault-component");
    const names = Object.keys(status.components || {});
    if (select.options.length !== names.length) {
      replaceChildren(select, names.map((n) => el("option", { value: n }, n)));
    }
    this.dirty = true;
  }

  message(text) {
    $("health-msg").textContent = text;
  }

  showSwitches(state) {
    for (const box of document.querySelectorAll("#switches input")) {
      const on = state ? state[box.dataset.feature] : undefined;
      box.checked = Boolean(on);
      box.indeterminate = on === undefined;
    }
  }

  async toggle(box) {
    try {
      const result = await this.ctx.conn.request("enable_debugging", { feature: box.dataset.feature, enabled: box.checked });
      this.showSwitches(result.state);
      this.message(`${box.dataset.feature} ${box.checked ? "on" : "off"}.`);
    } catch (err) {
      box.checked = !box.checked;
      this.message(`Could not switch ${box.dataset.feature}: ${err.message}`);
    }
  }

  async inject() {
    const component = $("fault-component").value;
    const fault = $("fault-kind").value;
    try {
      await this.ctx.conn.request("inject_fault", { component, fault });
      this.message(`Injected ${fault} into ${component}; the watchdog notices at its next check.`);
    } catch (err) {
      this.message(`Fault injection failed: ${err.message}`);
    }
  }

  async reset(name) {
    try {
      const result = await this.ctx.conn.request("reset_component", { component: name });
      this.message(`${name} reset: status ${result.status}; supervision resumes at the next check.`);
      this.update(await this.ctx.conn.request("get_health_status"));
    } catch (err) {
      this.message(`Reset of ${name} failed: ${err.message}`);
    }
  }

  render() {
    const s = this.status;
    if (!s) {
      $("health-overall").textContent = "Waiting for the first health status…";
      return;
    }
    const since = (performance.now() - this.receivedAt) / 1000;
    const overall = $("health-overall");
    overall.dataset.status = s.overall_health;
    overall.textContent = `Overall: ${s.overall_health}${s.ready ? " · ready" : " · not ready"}` +
      (s.failed && s.failed.length ? ` · failed: ${s.failed.join(", ")} (reset them below)` : "");
    replaceChildren($("health-table"),
      el("tr", {}, ["Component", "Status", "Heartbeat age", "Restarts (period / total)", "Failures in a row", "Leak", "Last error", "Action"]
        .map((h) => el("th", { scope: "col" }, h))),
      Object.entries(s.components || {}).map(([name, c]) => {
        const leak = c.leak;
        const leakText = leak ? (leak.suspected ? `suspected (+${fmtBytes(leak.slope_bytes_per_s)}/s, r² ${leak.r2.toFixed(2)})` : `no (${leak.samples} samples)`) : "–";
        const age = typeof c.heartbeat_age_s === "number" && c.last_heartbeat_at ? c.heartbeat_age_s + since : null;
        return el("tr", { "data-component": name, "data-status": c.status },
          el("th", { scope: "row" }, name, c.required ? "" : el("span", { class: "meta" }, " (optional)")),
          el("td", {}, el("span", { class: "badge", "data-status": c.status }, c.status),
            c.retry_in_s ? el("span", { class: "meta" }, ` retry in ${c.retry_in_s.toFixed(1)} s`) : null),
          el("td", { class: "num" }, fmtAge(age)),
          el("td", { class: "num" }, `${c.restarts} / ${c.restarts_total}`),
          el("td", { class: "num" }, c.consecutive_failures),
          el("td", { "data-leak": leak?.suspected ? "suspected" : "no" }, leakText),
          el("td", { class: "small" }, c.last_error ?? "–"),
          el("td", {}, el("button", { type: "button", class: c.status === "failed" ? "danger" : "",
            "aria-label": `Reset ${name}`, onclick: () => this.reset(name) }, "Reset")));
      }));
    const p = s.process;
    $("health-process").textContent = p
      ? `Process memory: ${fmtBytes(p.memory_usage)}; leak ${p.leak?.suspected ? "SUSPECTED" : "not suspected"}.`
      : "";
  }
}
