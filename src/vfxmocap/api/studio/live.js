// Live mode: a camera (getUserMedia) through WS /api/stream/<name>, processed frames drawn on
// a canvas. The camera keeps running when settings change: only the stream is reopened.
import { useEffect, useRef, useState } from "preact/hooks";
import { SchemaForm, defaults, html, pruned } from "./form.js";

const MAX_SIDE = 640; // frames are scaled down to this before they are sent

export function Live({ client, workflows }) {
  const streams = workflows.filter((w) => w.live).map((w) => w.live);
  const [name, setName] = useState(streams[0]?.name || "");
  const spec = streams.find((s) => s.name === name);
  const [settings, setSettings] = useState({});
  const [cameras, setCameras] = useState([]);
  const [camera, setCamera] = useState("");
  const [running, setRunning] = useState(false);
  const [stats, setStats] = useState(null);
  const [error, setError] = useState(null);
  const video = useRef(null);
  const canvas = useRef(null);
  const session = useRef({ stream: null, media: null, timer: null, grabbing: false, frames: 0 });

  useEffect(() => { if (spec) setSettings(defaults(spec.settings, spec.settings)); }, [name]);
  const listCameras = async () => {
    const devices = await navigator.mediaDevices.enumerateDevices();
    setCameras(devices.filter((d) => d.kind === "videoinput"));
  };
  useEffect(() => { if (navigator.mediaDevices) listCameras(); }, []);
  useEffect(() => () => stop(), []);

  const openStream = () => {
    const s = session.current;
    if (s.stream) s.stream.close();
    const stream = client.stream(name, pruned(settings), {
      onFrame: async (jpeg) => {
        const bitmap = await createImageBitmap(jpeg);
        const c = canvas.current;
        if (!c) return;
        c.width = bitmap.width; c.height = bitmap.height;
        c.getContext("2d").drawImage(bitmap, 0, 0);
        s.frames += 1;
        c.dataset.frames = String(s.frames);
      },
      onStats: setStats,
      onError: (message) => setError({ code: "stream", message }),
      onClose: (info) => { if (s.stream === stream && info.code !== 1000 && info.code !== 1005) setError({ code: `closed ${info.code}`, message: info.reason }); },
    });
    s.stream = stream;
    stream.ready.catch((err) => setError({ code: err.code, message: err.message }));
  };

  const start = async () => {
    setError(null);
    const s = session.current;
    try {
      s.media = await navigator.mediaDevices.getUserMedia({ video: camera ? { deviceId: { exact: camera } } : true, audio: false });
    } catch (err) {
      setError({ code: "camera", message: String(err.message || err), hint: "Allow the camera for this page, or pick another." });
      return;
    }
    listCameras();
    video.current.srcObject = s.media;
    await video.current.play();
    openStream();
    const grab = document.createElement("canvas");
    const tick = () => {
      const v = video.current;
      // One frame grabbed at a time (its JPEG encodes off this loop), sent when the stream's
      // window has room: the stream's own count of frames in flight, never this loop's.
      if (!s.grabbing && s.stream && s.stream.canSend() && v && v.videoWidth) {
        s.grabbing = true;
        const scale = Math.min(1, MAX_SIDE / Math.max(v.videoWidth, v.videoHeight));
        grab.width = Math.round(v.videoWidth * scale); grab.height = Math.round(v.videoHeight * scale);
        grab.getContext("2d").drawImage(v, 0, 0, grab.width, grab.height);
        grab.toBlob((blob) => { s.grabbing = false; if (blob && s.stream) s.stream.send(blob); }, "image/jpeg", 0.8);
      }
      s.timer = requestAnimationFrame(tick);
    };
    s.timer = requestAnimationFrame(tick);
    setRunning(true);
  };

  function stop() {
    const s = session.current;
    if (s.timer) cancelAnimationFrame(s.timer);
    if (s.stream) s.stream.close();
    if (s.media) s.media.getTracks().forEach((t) => t.stop());
    Object.assign(s, { stream: null, media: null, timer: null, grabbing: false });
    setRunning(false);
  }

  if (!streams.length) return html`<section class="card"><h2>Live</h2><p>No live streams on this server.</p></section>`;
  return html`<section class="live">
    <div class="card">
      <h2>Live</h2>
      <div class="toolbar">
        <label for="live-stream">Stream</label>
        <select id="live-stream" value=${name} disabled=${running} onChange=${(e) => setName(e.target.value)}>
          ${streams.map((s) => html`<option value=${s.name}>${s.name}</option>`)}
        </select>
        <label for="live-camera">Camera</label>
        <select id="live-camera" value=${camera} disabled=${running} onChange=${(e) => setCamera(e.target.value)}>
          <option value="">default</option>
          ${cameras.map((c, i) => html`<option value=${c.deviceId}>${c.label || `camera ${i + 1}`}</option>`)}
        </select>
        ${running
          ? html`<button type="button" id="live-stop" onClick=${stop}>Stop</button>
                 <button type="button" id="live-apply" onClick=${openStream}>Apply settings</button>`
          : html`<button type="button" class="primary" id="live-start" onClick=${start}>Start</button>`}
      </div>
      ${error && html`<div class="error" role="alert"><strong class="code">${error.code}</strong> ${error.message}
        ${error.hint && html`<div class="hint">${error.hint}</div>`}</div>`}
      ${stats && html`<p class="muted" id="live-stats">in ${stats.fps_in} fps · out ${stats.fps_out} fps ·
        latency ${stats.latency_p50_ms} ms (p95 ${stats.latency_p95_ms}) · dropped ${stats.dropped} · ${stats.frames} frames</p>`}
      <div class="before-after">
        <figure><video ref=${video} muted playsinline class="live-canvas"></video><figcaption>camera</figcaption></figure>
        <figure><canvas ref=${canvas} id="live-out" class="live-canvas" width="320" height="240"></canvas><figcaption>processed</figcaption></figure>
      </div>
    </div>
    ${spec && html`<div class="card"><h2>Settings</h2>
      <${SchemaForm} key=${name} schema=${spec.settings} files=${spec.files} value=${settings}
        onChange=${setSettings} client=${client} onError=${(e) => setError(e)} /></div>`}
  </section>`;
}
