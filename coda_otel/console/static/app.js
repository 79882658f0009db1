// The console's entry point: asks for the token when the service needs one, opens the
// WebSocket, routes events to the five views and renders dirty views a few times a second.
import { Connection } from "./conn.js";
import { PipelineView } from "./pipeline.js";
import { MemoryView } from "./memory.js";
import { CacheView } from "./cache.js";
import { HealthView } from "./health.js";
import { TracesView } from "./traces.js";

const RENDER_EVERY_MS = 250; // at most 4 renders a second, however fast events arrive
const TOKEN_KEY = "coda-debug-token";
const $ = (id) => document.getElementById(id);

class Api {
  constructor() {
    this.token = sessionStorage.getItem(TOKEN_KEY);
  }

  /** GET a console JSON route; throws an Error with .status on an HTTP error. */
  async get(path) {
    const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
    const resp = await fetch(path, { headers, cache: "no-store" });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = new Error(body.error ? body.error.message : `HTTP ${resp.status}`);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  setToken(token) {
    this.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  }
}

function showConn(text, state) {
  const node = $("conn");
  node.textContent = text;
  node.dataset.state = state;
}

function askForToken(api, message) {
  $("views").hidden = true;
  $("auth").hidden = false;
  $("auth-error").textContent = message || "";
  showConn("Waiting for the debug token", "auth");
  $("auth-token").focus();
  return new Promise((resolve) => {
    $("auth-form").onsubmit = (ev) => {
      ev.preventDefault();
      api.setToken($("auth-token").value.trim());
      $("auth-token").value = "";
      resolve();
    };
  });
}

/** The console config; loops on the token prompt until the service accepts the token. */
async function authenticate(api, status) {
  if (status.token_required && !api.token) await askForToken(api);
  for (;;) {
    try {
      const config = await api.get("console/config");
      $("auth").hidden = true;
      $("views").hidden = false;
      return config;
    } catch (err) {
      if (err.status !== 401) throw err;
      api.setToken(null);
      await askForToken(api, "The service refused this token. Check CODA_DEBUG_TOKEN and try again.");
    }
  }
}

async function untilReachable(api) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await api.get("console/status");
    } catch (err) {
      const delay = Math.min(5000, 500 * 2 ** attempt);
      showConn(`Service unreachable (${err.message}); retrying in ${(delay / 1000).toFixed(1)} s`, "closed");
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

function loadCharts() {
  const css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = "assets/vendor/uPlot.min.css";
  document.head.append(css);
  return new Promise((resolve) => {
    const script = document.createElement("script");
    script.src = "assets/vendor/uPlot.iife.min.js";
    script.onload = () => resolve(true);
    script.onerror = () => resolve(false);
    document.head.append(script);
  });
}

function setupTabs(views) {
  const show = (name) => {
    if (!views[name]) name = "pipeline";
    for (const [key, view] of Object.entries(views)) {
      const active = key === name;
      $(`view-${key}`).hidden = !active;
      $(`tab-${key}`).setAttribute("aria-selected", String(active));
      view.visible = active;
      if (active) view.dirty = true;
    }
  };
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => { location.hash = tab.dataset.view; });
  }
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1));
}

async function main() {
  const api = new Api();
  const status = await untilReachable(api);
  const config = await authenticate(api, status);
  const charts = status.charts && (await loadCharts());
  const ctx = { api, config, charts, conn: null };
  const views = {
    pipeline: new PipelineView(ctx),
    traces: new TracesView(ctx),
    memory: new MemoryView(ctx),
    cache: new CacheView(ctx),
    health: new HealthView(ctx),
  };
  setupTabs(views);
  const wsUrl = new URL("../ws", location.href);
  wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  let events = 0;
  ctx.conn = new Connection({
    url: wsUrl.href,
    token: api.token,
    onFrame: (frame) => {
      events += 1;
      for (const view of Object.values(views)) view.onFrame(frame);
    },
    onState: (s) => {
      if (s.state === "open") {
        showConn("Live", "open");
        for (const view of Object.values(views)) view.onOpen();
      } else if (s.state === "connecting") {
        if (s.attempt) showConn(`Reconnecting (attempt ${s.attempt})…`, "connecting");
        else showConn("Connecting…", "connecting");
      } else {
        const wait = s.delay_ms === null ? "" : `; reconnecting in ${(s.delay_ms / 1000).toFixed(1)} s`;
        showConn(`Disconnected${s.opened ? "" : " (service unreachable)"}${wait}`, "closed");
      }
    },
    // A refused handshake may be a changed token: check it over HTTP, ask again if refused.
    beforeReconnect: async () => {
      try {
        await api.get("console/config");
      } catch (err) {
        if (err.status === 401) { // the service restarted with another token
          api.setToken(null);
          ctx.config = await authenticate(api, { token_required: true });
          ctx.conn.token = api.token;
        }
      }
      return true;
    },
  });
  ctx.conn.start();
  window.addEventListener("resize", () => {
    for (const view of Object.values(views)) view.dirty = true; // charts follow the width
  });
  let lastTick = performance.now();
  setInterval(() => {
    const now = performance.now();
    if (now - lastTick >= 1000) {
      const rate = (events * 1000) / (now - lastTick);
      views.pipeline.setRate(rate, ctx.conn.dropped);
      events = 0;
      lastTick = now;
      views.health.dirty = true; // heartbeat ages tick
    }
    for (const view of Object.values(views)) {
      if (view.dirty && view.visible) {
        view.dirty = false;
        view.render();
      }
    }
    $("health-dot").dataset.status = views.health.overall || "unknown";
  }, RENDER_EVERY_MS);
  window.codaConsole = { views, conn: ctx.conn }; // for poking around in devtools
}

main().catch((err) => {
  showConn(`The console failed to start: ${err.message}`, "error");
  console.error(err);
});
