// vfxmocap.js: a JavaScript client of the vfxmocap API (an ES module, no dependencies).
// Runs in browsers and in Node 20+ (Node 20 needs `--experimental-websocket` for events and
// streams; Node 22 has WebSocket built in).
//
//   import { Client } from "./vfxmocap.js";
//   const vfx = new Client("http://127.0.0.1:8420", { token });
//   const face = await vfx.upload(file, { onProgress: (f) => console.log(f) });
//   const job = await vfx.submit("swap", { sources: [face.id], target: clip.id });
//   const done = await vfx.wait(job.id, { onEvent: (e) => console.log(e.percent) });
//   const url = vfx.outputUrl(done.id, "output");

/**
 * @typedef {{code: string, message: string, hint: string}} ApiErrorBody
 * @typedef {{type: string, job_id: string, stage: string|null, value: number|null,
 *   max: number|null, percent: number|null, eta_s: number|null, message: string,
 *   image?: string, mime?: string}} JobEvent
 * @typedef {{id: string, workflow: string, state: string, priority: number,
 *   inputs: Record<string, any>, outputs: string[], percent: number|null,
 *   eta_s: number|null, progress: Record<string, any>, error: ApiErrorBody|null,
 *   created_at: number, started_at: number|null, finished_at: number|null,
 *   backend: string|null, route: string|null, summary: Record<string, any>|null,
 *   position: number|null}} Job
 * @typedef {{id: string, kind: string, filename: string, [key: string]: any}} Upload
 * @typedef {{type: "stats", frames: number, received: number, dropped: number,
 *   fps_in: number, fps_out: number, latency_p50_ms: number, latency_p95_ms: number}} StreamStats
 */

/** The states after which a job changes no more. */
export const FINAL_STATES = new Set(["succeeded", "failed", "cancelled"]);
const FINAL_EVENTS = new Set(["succeeded", "failed", "cancelled", "deleted"]);

/** A failure the API reported (its one error shape), or a network failure (`unreachable`). */
export class VfxError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string} [hint]
   * @param {number} [status]
   */
  constructor(code, message, hint = "", status = 0) {
    super(message);
    this.name = "VfxError";
    this.code = code;
    this.hint = hint;
    this.status = status;
  }
}

/** @param {number} status @param {string} text @returns {VfxError} */
function errorFrom(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      return new VfxError(body.error.code, body.error.message, body.error.hint || "", status);
    }
  } catch (_) {
    // not JSON: fall through to the plain text
  }
  return new VfxError("http_error", `HTTP ${status}: ${text.slice(0, 200)}`, "", status);
}

export class Client {
  /**
   * @param {string} [url] the server's address; "" means the page's own origin
   * @param {{token?: string|null, WebSocket?: any}} [options]
   */
  constructor(url = "", options = {}) {
    this.base = url.replace(/\/+$/, "");
    /** @type {string|null} */
    this.token = options.token || null;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
  }

  /**
   * An absolute URL of an API path, with the token in the query when `withToken` (for
   * what a browser fetches itself: video sources, downloads, WebSockets).
   * @param {string} path starts with /api
   * @param {Record<string, any>} [query]
   * @param {boolean} [withToken]
   */
  url(path, query = {}, withToken = false) {
    const origin = this.base || (globalThis.location ? globalThis.location.origin : "");
    const u = new URL(origin + path);
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
    }
    if (withToken && this.token) u.searchParams.set("token", this.token);
    return u.toString();
  }

  /** @returns {Record<string, string>} */
  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  /**
   * One API call; answers parsed JSON (text for text responses, null for 204).
   * @param {string} method
   * @param {string} path
   * @param {any} [body]
   * @param {Record<string, any>} [query]
   */
  async request(method, path, body = undefined, query = {}) {
    /** @type {Record<string, string>} */
    const headers = this.headers();
    let payload;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(this.url(path, query), { method, headers, body: payload });
    } catch (exc) {
      throw new VfxError("unreachable", `cannot reach ${this.base || "the server"}: ${exc}`,
        "Is `vfx serve` running at this address?");
    }
    const text = await response.text();
    if (!response.ok) throw errorFrom(response.status, text);
    if (response.status === 204 || !text) return null;
    const type = response.headers.get("content-type") || "";
    return type.includes("json") ? JSON.parse(text) : text;
  }

  system() { return this.request("GET", "/api/system"); }
  models() { return this.request("GET", "/api/models"); }
  queue() { return this.request("GET", "/api/queue"); }
  workers() { return this.request("GET", "/api/workers"); }
  /** @returns {Promise<any[]>} every workflow with its input JSON schema */
  workflows() { return this.request("GET", "/api/workflows"); }

  /**
   * History, newest first: pass `next_cursor` back as `cursor` for the next page.
   * @param {{state?: string, workflow?: string, limit?: number, cursor?: number|null}} [filters]
   * @returns {Promise<{jobs: Job[], next_cursor: number|null}>}
   */
  jobs(filters = {}) { return this.request("GET", "/api/jobs", undefined, filters); }
  /** @param {string} id @returns {Promise<Job>} */
  job(id) { return this.request("GET", `/api/jobs/${id}`); }

  /**
   * Queue a job. `inputs` name files by upload id (see `upload`).
   * @param {string} workflow
   * @param {Record<string, any>} inputs
   * @param {{priority?: number, timeout_s?: number, max_attempts?: number,
   *   backend?: "auto"|"local"|"celery"|"remote"}} [options] backend: where it runs (auto: the server's order)
   * @returns {Promise<{id: string, state: string, position: number|null, backend: string, route: string}>}
   */
  submit(workflow, inputs, options = {}) {
    return this.request("POST", "/api/jobs", { workflow, inputs, ...options });
  }

  /** @param {string} id @returns {Promise<Job>} */
  cancel(id) { return this.request("POST", `/api/jobs/${id}/cancel`); }
  /** @param {string} id @returns {Promise<Job>} */
  retry(id) { return this.request("POST", `/api/jobs/${id}/retry`); }
  /** @param {string} id */
  remove(id) { return this.request("DELETE", `/api/jobs/${id}`); }
  /** @param {string} id @returns {Promise<string>} what the job's worker logged */
  log(id) { return this.request("GET", `/api/jobs/${id}/log`); }

  /**
   * Where an output is served (range requests work, so a <video> can seek).
   * @param {string} id @param {string} name
   */
  outputUrl(id, name) { return this.url(`/api/jobs/${id}/outputs/${encodeURIComponent(name)}`, {}, true); }

  /** Where an upload's bytes are served back (a job's input, for a before / after). @param {string} id */
  uploadUrl(id) { return this.url(`/api/uploads/${id}`, {}, true); }

  /**
   * One frame of a frame workflow's target, before and after its processor (JPEG data URLs).
   * @param {string} workflow
   * @param {Record<string, any>} inputs
   * @param {{frame?: number, time_limit_s?: number}} [options]
   * @returns {Promise<{frame: number, frames: number, elapsed_s: number, before: string, after: string}>}
   */
  preview(workflow, inputs, options = {}) {
    return this.request("POST", "/api/preview", { workflow, inputs, ...options });
  }

  /**
   * Upload a file (a browser File/Blob) for job inputs. In browsers progress comes from
   * XMLHttpRequest as the bytes go; without it (Node) once, at the end.
   * @param {Blob} file
   * @param {{name?: string, onProgress?: (fraction: number) => void}} [options]
   * @returns {Promise<Upload>}
   */
  upload(file, options = {}) {
    const name = options.name || /** @type {any} */ (file).name || "upload";
    const form = new FormData();
    form.append("file", file, name);
    const onProgress = options.onProgress || (() => {});
    const url = this.url("/api/uploads");
    if (typeof XMLHttpRequest === "undefined") {
      return (async () => {
        let response;
        try {
          response = await fetch(url, { method: "POST", headers: this.headers(), body: form });
        } catch (exc) {
          throw new VfxError("unreachable", `cannot reach the server: ${exc}`);
        }
        const text = await response.text();
        if (!response.ok) throw errorFrom(response.status, text);
        onProgress(1);
        return JSON.parse(text);
      })();
    }
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      for (const [k, v] of Object.entries(this.headers())) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onProgress(1);
          resolve(JSON.parse(xhr.responseText));
        } else {
          reject(errorFrom(xhr.status, xhr.responseText));
        }
      };
      xhr.onerror = () => reject(new VfxError("unreachable", "the upload could not reach the server"));
      xhr.send(form);
    });
  }

  /**
   * Follow job events over `WS /api/ws` (every job, or one with `jobId`). The socket
   * reconnects after a drop (with back-off) unless it followed one job to its end;
   * `onOpen` runs on every (re)connect: the moment to re-read state that events missed.
   * @param {{jobId?: string, onEvent?: (e: JobEvent) => void, onOpen?: () => void,
   *   onClose?: (info: {code: number, reason: string}) => void, reconnect?: boolean}} [handlers]
   * @returns {{close: () => void, readonly connected: boolean}}
   */
  events(handlers = {}) {
    const { jobId, onEvent = () => {}, onOpen = () => {}, onClose = () => {} } = handlers;
    const reconnect = handlers.reconnect !== false;
    const url = this.url("/api/ws", { job_id: jobId }, true).replace(/^http/, "ws");
    let socket = null;
    let stopped = false;
    let connected = false;
    let delay = 250;
    const open = () => {
      socket = new this.WebSocket(url);
      socket.onopen = () => { connected = true; delay = 250; onOpen(); };
      socket.onmessage = (m) => {
        const event = JSON.parse(m.data);
        onEvent(event);
        if (jobId && FINAL_EVENTS.has(event.type)) stopped = true;
      };
      socket.onclose = (c) => {
        connected = false;
        onClose({ code: c.code, reason: c.reason });
        if (c.code === 1008) stopped = true; // refused (token, unknown job): retrying cannot help
        if (!stopped && reconnect) {
          setTimeout(() => { if (!stopped) open(); }, delay);
          delay = Math.min(delay * 2, 5000);
        }
      };
    };
    open();
    return {
      close() { stopped = true; if (socket) socket.close(); },
      get connected() { return connected; },
    };
  }

  /**
   * Wait for a job's end, following its events; resolves with the finished job (whatever
   * its state), or rejects when the socket was refused.
   * @param {string} id
   * @param {{onEvent?: (e: JobEvent) => void}} [options]
   * @returns {Promise<Job>}
   */
  wait(id, options = {}) {
    return new Promise((resolve, reject) => {
      let finished = false;
      const check = async () => {
        const job = await this.job(id);
        if (FINAL_STATES.has(job.state) && !finished) { finished = true; follow.close(); resolve(job); }
      };
      const follow = this.events({
        jobId: id,
        onEvent: (e) => {
          if (options.onEvent) options.onEvent(e);
          if (FINAL_EVENTS.has(e.type) || (e.type === "status" && FINAL_STATES.has(e.state))) {
            check().catch(reject);
          }
        },
        onOpen: () => { check().catch(reject); }, // it may have ended while we were away
        onClose: (c) => { if (c.code === 1008 && !finished) reject(new VfxError("refused", c.reason)); },
      });
    });
  }

  /**
   * A live stream (`WS /api/stream/{name}`): settings first (upload ids in file fields),
   * then JPEG/WebP frames in and processed JPEG frames out. The server processes one frame
   * at a time and keeps only the newest waiting one (an older waiting frame is dropped and
   * never answered), so the stream keeps at most `window` frames in flight: `send` returns
   * false while the stream is not ready or the window is full. A frame counts as in flight
   * until it is answered (a processed frame, or an error for a frame it could not read) or
   * the server's stats report it dropped, so a dropped frame never holds the window shut.
   * @param {string} name swap, pose, or a plugin's stream
   * @param {Record<string, any>} settings
   * @param {{onFrame?: (jpeg: Blob) => void, onStats?: (s: StreamStats) => void,
   *   onError?: (message: string) => void, onClose?: (info: {code: number, reason: string}) => void,
   *   window?: number}} [handlers] `window`: frames in flight at most (default 2: one being
   *   processed, one waiting; more only adds latency and drops)
   * @returns {{ready: Promise<void>, send: (frame: Blob|ArrayBuffer) => boolean,
   *   canSend: () => boolean, inFlight: () => number, close: () => void}}
   */
  stream(name, settings, handlers = {}) {
    const url = this.url(`/api/stream/${encodeURIComponent(name)}`, {}, true).replace(/^http/, "ws");
    const socket = new this.WebSocket(url);
    socket.binaryType = "blob";
    const limit = Math.max(1, handlers.window ?? 2);
    let isReady = false;
    let sent = 0, answered = 0, dropped = 0; // dropped: as the server's last stats said
    const inFlight = () => Math.max(0, sent - answered - dropped);
    /** @type {(v?: any) => void} */ let ready = () => {};
    /** @type {(e: any) => void} */ let refused = () => {};
    const whenReady = new Promise((resolve, reject) => { ready = resolve; refused = reject; });
    socket.onopen = () => socket.send(JSON.stringify(settings));
    socket.onmessage = (m) => {
      if (typeof m.data === "string") {
        const message = JSON.parse(m.data);
        if (message.type === "ready") { isReady = true; ready(); }
        else if (message.type === "stats") {
          dropped = message.dropped;
          if (handlers.onStats) handlers.onStats(message);
        } else if (message.type === "error") {
          if (isReady) answered += 1; // a frame it could not read: answered, not processed
          else refused(new VfxError("stream_refused", message.message));
          if (handlers.onError) handlers.onError(message.message);
        }
      } else {
        answered += 1;
        if (handlers.onFrame) handlers.onFrame(m.data instanceof Blob ? m.data : new Blob([m.data], { type: "image/jpeg" }));
      }
    };
    socket.onclose = (c) => {
      isReady = false;
      refused(new VfxError("stream_closed", c.reason || `closed (${c.code})`));
      if (handlers.onClose) handlers.onClose({ code: c.code, reason: c.reason });
    };
    const canSend = () => isReady && inFlight() < limit;
    return {
      ready: whenReady,
      canSend,
      inFlight,
      send(frame) { if (!canSend()) return false; socket.send(frame); sent += 1; return true; },
      close() { socket.close(); },
    };
  }
}
