// A time-series chart drawn by uPlot (from npm, copied in by `make console-assets`); when the
// library is missing the box says so instead of drawing.
import { el } from "./util.js";

export class LineChart {
  /** series: [{label, stroke}], one per y column; x is unix seconds. */
  constructor(node, available, series, { height = 220, yRange = null } = {}) {
    Object.assign(this, { node, series, height, yRange, plot: null, data: null });
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
      series: [{}, ...this.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, spanGaps: false, points: { show: true, size: 5 } }))],
      axes: [{}, {}],
      legend: { live: false },
    };
    this.plot = new window.uPlot(opts, this.data, this.node);
  }
}
