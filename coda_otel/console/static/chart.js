// A time-series chart drawn by uPlot (from npm, copied in by `make console-assets`); when the
// library is missing the box says so instead of drawing.
import { el } from "./util.js";

// Time ticks at whole seconds or more (never "…:05.500"), labelled in local clock time.
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

/** Y value formatters: "count" (whole numbers), "percent" (a ratio 0..1 as %). */
export const Y_FORMATS = {
  count: { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000], label: (v) => v.toLocaleString() },
  percent: { incrs: [0.05, 0.1, 0.2, 0.25, 0.5], label: (v) => `${Math.round(v * 100)} %` },
};

export class LineChart {
  /** series: [{label, stroke}], one per y column; x is unix seconds; yFormat a Y_FORMATS key. */
  constructor(node, available, series, { height = 220, yRange = null, yFormat = "count" } = {}) {
    Object.assign(this, { node, series, height, yRange, yFormat: Y_FORMATS[yFormat], plot: null, data: null });
    this.available = available && typeof window.uPlot === "function";
    if (!this.available) {
      node.append(el("p", { class: "meta" }, "Charts unavailable: the chart library was not built (run `make console-assets`)."));
    }
  }

  setSeries(series) {
    if (JSON.stringify(series) === JSON.stringify(this.series)) return;
    this.series = series;
    this.plot?.destroy();
    this.plot = null;
  }

  setData(data) {
    this.data = data;
    this.draw();
  }

  resize() {
    if (this.plot && this.node.clientWidth && Math.abs(this.plot.width - this.node.clientWidth) > 4) {
      this.plot.setSize({ width: this.node.clientWidth, height: this.height });
    }
    this.draw();
  }

  draw() {
    if (!this.available || !this.data || !this.node.clientWidth) return; // hidden: draw later
    if (this.plot) {
      this.plot.setData(this.data);
      return;
    }
    const opts = {
      width: this.node.clientWidth,
      height: this.height,
      scales: { x: { time: true }, y: this.yRange ? { range: this.yRange } : {} },
      series: [{ label: "time", value: (u, v) => (v === null ? "–" : clock(v)) },
        ...this.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, spanGaps: false, points: { show: true, size: 5 },
          value: (u, v) => (v === null ? "–" : this.yFormat.label(v)) }))],
      axes: [
        { incrs: TIME_INCRS, space: 70, values: (u, splits) => splits.map(clock) },
        { incrs: this.yFormat.incrs, size: 56, values: (u, splits) => splits.map(this.yFormat.label) },
      ],
      legend: { live: false },
    };
    this.plot = new window.uPlot(opts, this.data, this.node);
  }
}
