// The debug WebSocket: connect (token in the Sec-WebSocket-Protocol header, never in the URL),
// match command answers to requests, count dropped messages, and reconnect with backoff.

const PROTOCOL = "coda-debug";
const TOKEN_PREFIX = "coda-token.";
const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
const REQUEST_TIMEOUT_MS = 60000;

/** base64url of the UTF-8 token: always a valid subprotocol name, whatever the token holds. */
export function tokenProtocol(token) {
  const bytes = new TextEncoder().encode(token);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return TOKEN_PREFIX + btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export class Connection {
  /**
   * onFrame(frame) gets every server message; onState({state, ...}) each change:
   * "connecting", "open", "closed" (with delay_ms and attempt before the next try).
   * beforeReconnect() may return false to stop retrying (e.g. the token was rejected).
   */
  constructor({ url, token = null, onFrame, onState, beforeReconnect = async () => true }) {
    Object.assign(this, { url, token, onFrame, onState, beforeReconnect });
    this.ws = null;
    this.attempt = 0;
    this.nextId = 0;
    this.pending = new Map();
    this.lastSeq = 0;
    this.dropped = 0;
    this.stopped = false;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "console closed");
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  open() {
    const protocols = [PROTOCOL];
    if (this.token) protocols.push(tokenProtocol(this.token));
    this.onState({ state: "connecting", attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url, protocols);
    } catch (err) {
      this.onState({ state: "closed", reason: String(err), delay_ms: null });
      return;
    }
    this.ws = ws;
    this.lastSeq = 0;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.onState({ state: "open" });
    };
    ws.onmessage = (msg) => this.receive(msg.data);
    ws.onclose = (ev) => this.closed(ev, opened);
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof frame.seq === "number") {
      if (frame.seq > this.lastSeq + 1) this.dropped += frame.seq - this.lastSeq - 1;
      this.lastSeq = frame.seq;
    }
    if (frame.id !== null && frame.id !== undefined && this.pending.has(frame.id)) {
      const { resolve, reject, timer } = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      clearTimeout(timer);
      if (frame.type === "error") reject(new Error(`${frame.data.code}: ${frame.data.message}`));
      else resolve(frame.data);
    }
    this.onFrame(frame);
  }

  async closed(ev, opened) {
    this.ws = null;
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new Error("the connection closed before the answer came"));
    }
    this.pending.clear();
    if (this.stopped) return;
    const delay = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** this.attempt);
    const jittered = Math.round(delay * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    if (!opened && !(await this.beforeReconnect())) return;
    this.onState({ state: "closed", code: ev.code, opened, delay_ms: jittered, attempt: this.attempt });
    this.timer = setTimeout(() => this.open(), jittered);
  }

  /** Send a command; resolves with its result's data, rejects with the server's error. */
  request(type, data = {}) {
    if (!this.isOpen) return Promise.reject(new Error("not connected"));
    const id = `c${++this.nextId}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${type}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ type, id, data }));
    });
  }
}
