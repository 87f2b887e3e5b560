// Viewers for motion outputs, on a 2-D canvas (no WebGL needed): a BVH skeleton player with
// orbit (drag, or arrow keys) and CSV curves (Live Link Face blendshapes, keypoints).
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "./form.js";

/** Parse BVH text: joints (name, parent, offset, channels) and the motion frames. */
export function parseBvh(text) {
  const tokens = text.split(/\s+/).filter(Boolean);
  const joints = [];
  const stack = [];
  let i = 0;
  let channelCount = 0;
  while (i < tokens.length && tokens[i] !== "MOTION") {
    const t = tokens[i++];
    if (t === "ROOT" || t === "JOINT" || t === "End") {
      const name = t === "End" ? `${joints[stack.at(-1)].name}_end` : tokens[i];
      i += 1; // the name, or "Site"
      joints.push({ name, parent: stack.length ? stack.at(-1) : -1, offset: [0, 0, 0], channels: [], start: channelCount });
      stack.push(joints.length - 1);
    } else if (t === "OFFSET") {
      joints[stack.at(-1)].offset = [0, 1, 2].map((k) => parseFloat(tokens[i + k]));
      i += 3;
    } else if (t === "CHANNELS") {
      const n = parseInt(tokens[i++], 10);
      const joint = joints[stack.at(-1)];
      joint.channels = tokens.slice(i, i + n);
      joint.start = channelCount;
      channelCount += n;
      i += n;
    } else if (t === "}") {
      stack.pop();
    }
  }
  i += 1; // MOTION
  const count = parseInt(tokens[i + 1], 10); // Frames: N
  const frameTime = parseFloat(tokens[i + 4]); // Frame Time: T
  i += 5;
  const frames = [];
  for (let f = 0; f < count; f++) {
    frames.push(tokens.slice(i, i + channelCount).map(Number));
    i += channelCount;
  }
  return { joints, frames, frameTime: frameTime > 0 ? frameTime : 1 / 30 };
}

const multiply = (a, b) => a.map((row, r) => b[0].map((_, c) => row.reduce((s, v, k) => s + v * b[k][c], 0)));
function rotation(axis, degrees) {
  const r = (degrees * Math.PI) / 180, c = Math.cos(r), s = Math.sin(r);
  if (axis === "X") return [[1, 0, 0], [0, c, -s], [0, s, c]];
  if (axis === "Y") return [[c, 0, s], [0, 1, 0], [-s, 0, c]];
  return [[c, -s, 0], [s, c, 0], [0, 0, 1]];
}

/** World positions of every joint at one frame (forward kinematics, channel order). */
export function pose(bvh, frame) {
  const values = bvh.frames[frame] || [];
  const world = [];
  for (const [index, joint] of bvh.joints.entries()) {
    let offset = [...joint.offset];
    let rot = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    joint.channels.forEach((channel, k) => {
      const v = values[joint.start + k] || 0;
      const axis = channel[0];
      if (channel.endsWith("position")) offset["XYZ".indexOf(axis)] += v;
      else rot = multiply(rot, rotation(axis, v));
    });
    if (joint.parent < 0) world[index] = { rot, pos: offset };
    else {
      const parent = world[joint.parent];
      const moved = parent.rot.map((row) => row.reduce((s, v, k) => s + v * offset[k], 0));
      world[index] = { rot: multiply(parent.rot, rot), pos: moved.map((v, k) => v + parent.pos[k]) };
    }
  }
  return world.map((w) => w.pos);
}

export function BvhPlayer({ url }) {
  const canvas = useRef(null);
  const [bvh, setBvh] = useState(null);
  const [frame, setFrame] = useState(0);
  const [playing, setPlaying] = useState(true);
  const view = useRef({ yaw: 0.6, pitch: 0.2, drag: null });
  useEffect(() => { fetch(url).then((r) => r.text()).then((t) => setBvh(parseBvh(t))); }, [url]);
  useEffect(() => {
    if (!bvh || !playing || bvh.frames.length < 2) return undefined;
    const timer = setInterval(() => setFrame((f) => (f + 1) % bvh.frames.length), bvh.frameTime * 1000);
    return () => clearInterval(timer);
  }, [bvh, playing]);
  useEffect(() => {
    if (!bvh || !canvas.current) return;
    draw(canvas.current, bvh, frame, view.current);
  });
  const orbit = (dyaw, dpitch) => {
    view.current.yaw += dyaw;
    view.current.pitch = Math.max(-1.5, Math.min(1.5, view.current.pitch + dpitch));
    draw(canvas.current, bvh, frame, view.current);
  };
  if (!bvh) return html`<p class="loading">Loading the skeleton…</p>`;
  return html`<div class="bvh">
    <canvas ref=${canvas} class="bvh-canvas" width="480" height="360" tabindex="0"
      aria-label="3-D skeleton: drag or use the arrow keys to orbit"
      data-joints=${bvh.joints.length} data-frames=${bvh.frames.length}
      onPointerDown=${(e) => { view.current.drag = [e.clientX, e.clientY]; }}
      onPointerMove=${(e) => { const d = view.current.drag; if (d) { orbit((e.clientX - d[0]) / 100, (e.clientY - d[1]) / 100); view.current.drag = [e.clientX, e.clientY]; } }}
      onPointerUp=${() => { view.current.drag = null; }}
      onKeyDown=${(e) => { const k = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] }[e.key]; if (k) { e.preventDefault(); orbit(...k); } }} />
    <div class="slider">
      <button type="button" onClick=${() => setPlaying(!playing)}>${playing ? "Pause" : "Play"}</button>
      <input type="range" aria-label="frame" min="0" max=${bvh.frames.length - 1} value=${frame}
        onInput=${(e) => { setPlaying(false); setFrame(parseInt(e.target.value, 10)); }} />
      <output>${frame + 1} / ${bvh.frames.length}</output>
    </div>
  </div>`;
}

function draw(c, bvh, frame, view) {
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#0d0f12";
  ctx.fillRect(0, 0, c.width, c.height);
  const points = pose(bvh, frame);
  const cy = Math.cos(view.yaw), sy = Math.sin(view.yaw), cp = Math.cos(view.pitch), sp = Math.sin(view.pitch);
  const projected = points.map(([x, y, z]) => {
    const rx = cy * x + sy * z, rz = -sy * x + cy * z;
    return [rx, cp * y - sp * rz];
  });
  // Fit the first frame's extent, so the skeleton stays put while it moves.
  if (!view.fit) {
    const xs = projected.map((p) => p[0]), ys = projected.map((p) => p[1]);
    const span = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1e-6);
    view.fit = { scale: (0.8 * Math.min(c.width, c.height)) / span, cx: (Math.max(...xs) + Math.min(...xs)) / 2, cy: (Math.max(...ys) + Math.min(...ys)) / 2 };
  }
  const { scale, cx, cy: cy0 } = view.fit;
  const screen = projected.map(([x, y]) => [c.width / 2 + (x - cx) * scale, c.height / 2 - (y - cy0) * scale]);
  ctx.strokeStyle = "#4ea1ff";
  ctx.lineWidth = 3;
  ctx.beginPath();
  bvh.joints.forEach((j, k) => {
    if (j.parent < 0) return;
    ctx.moveTo(...screen[j.parent]);
    ctx.lineTo(...screen[k]);
  });
  ctx.stroke();
  ctx.fillStyle = "#ffd166";
  for (const [x, y] of screen) ctx.fillRect(x - 2, y - 2, 4, 4);
}

const COLOURS = ["#4ea1ff", "#ffd166", "#ef476f", "#06d6a0", "#c77dff", "#f78c6b", "#8ecae6", "#b5e48c"];

/** Numeric CSV columns as curves over its rows; the most varying ones shown first. */
export function CsvCurves({ url }) {
  const canvas = useRef(null);
  const [table, setTable] = useState(null);
  const [shown, setShown] = useState([]);
  useEffect(() => {
    fetch(url).then((r) => r.text()).then((text) => {
      const rows = text.trim().split(/\r?\n/).map((l) => l.split(","));
      const header = rows.shift() || [];
      const columns = header.map((name, k) => ({ name, values: rows.map((r) => parseFloat(r[k])) }))
        .filter((c) => c.values.length && c.values.every((v) => Number.isFinite(v)));
      const spread = (c) => Math.max(...c.values) - Math.min(...c.values);
      const moving = columns.filter((c) => spread(c) > 0 && !/frame|time/i.test(c.name)).sort((a, b) => spread(b) - spread(a));
      setTable({ columns, rows: rows.length });
      setShown(moving.slice(0, 6).map((c) => c.name));
    });
  }, [url]);
  useEffect(() => {
    const c = canvas.current;
    if (!c || !table) return;
    const ctx = c.getContext("2d");
    ctx.fillStyle = "#0d0f12";
    ctx.fillRect(0, 0, c.width, c.height);
    shown.forEach((name, k) => {
      const col = table.columns.find((x) => x.name === name);
      const lo = Math.min(...col.values), hi = Math.max(...col.values), span = hi - lo || 1;
      ctx.strokeStyle = COLOURS[k % COLOURS.length];
      ctx.beginPath();
      col.values.forEach((v, i) => {
        const x = (i / Math.max(1, col.values.length - 1)) * c.width;
        const y = c.height - 8 - ((v - lo) / span) * (c.height - 16);
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      });
      ctx.stroke();
    });
  });
  if (!table) return html`<p class="loading">Loading…</p>`;
  return html`<div class="curves">
    <canvas ref=${canvas} class="curves-canvas" width="640" height="200" data-curves=${shown.length}
      aria-label=${`curves of ${shown.join(", ")}`}></canvas>
    <div class="legend">${table.columns.filter((c) => !/frame|time/i.test(c.name)).slice(0, 80).map((c) => html`<label class="chip">
      <input type="checkbox" checked=${shown.includes(c.name)}
        onChange=${(e) => setShown(e.target.checked ? [...shown, c.name] : shown.filter((n) => n !== c.name))} />
      <span style=${shown.includes(c.name) ? `color:${COLOURS[shown.indexOf(c.name) % COLOURS.length]}` : ""}>${c.name}</span></label>`)}</div>
    <p class="muted">${table.rows} rows; each curve scaled to its own range.</p>
  </div>`;
}

// Limbs by landmark name: drawn when both ends are in the file's `landmarks`.
const LIMBS = [
  ["left_shoulder", "right_shoulder"], ["left_hip", "right_hip"],
  ["left_shoulder", "left_hip"], ["right_shoulder", "right_hip"],
  ["left_shoulder", "left_elbow"], ["left_elbow", "left_wrist"],
  ["right_shoulder", "right_elbow"], ["right_elbow", "right_wrist"],
  ["left_hip", "left_knee"], ["left_knee", "left_ankle"],
  ["right_hip", "right_knee"], ["right_knee", "right_ankle"],
];

/** A pose JSON (vfxmocap.mocap schema) drawn over the video it was tracked on, in step with
 * its playback: pixel positions per frame, joints seen in yellow, held (not measured) grey. */
export function PoseOverlay({ url, video }) {
  const [take, setTake] = useState(null);
  const canvas = useRef(null);
  const player = useRef(null);
  useEffect(() => { fetch(url).then((r) => r.json()).then(setTake); }, [url]);
  useEffect(() => {
    const v = player.current, c = canvas.current;
    if (!take || !v || !c) return undefined;
    const index = Object.fromEntries(take.landmarks.map((n, i) => [n, i]));
    const byFrame = new Map(take.data.map((f) => [f.frame, f]));
    let handle = 0;
    const paint = () => {
      const [w, h] = take.size;
      if (c.width !== w) { c.width = w; c.height = h; }
      const ctx = c.getContext("2d");
      ctx.clearRect(0, 0, w, h);
      const frame = byFrame.get(Math.round(v.currentTime * take.fps)) || take.data[0];
      c.dataset.frame = frame ? String(frame.frame) : "";
      if (frame && frame.present) {
        const p = frame.pose;
        ctx.strokeStyle = "#4ea1ff"; ctx.lineWidth = Math.max(2, w / 200);
        ctx.beginPath();
        for (const [a, b] of LIMBS) {
          if (index[a] === undefined || index[b] === undefined) continue;
          ctx.moveTo(p[index[a]][0], p[index[a]][1]); ctx.lineTo(p[index[b]][0], p[index[b]][1]);
        }
        ctx.stroke();
        for (const point of p) {
          ctx.fillStyle = point[6] ? "#ffd166" : "#888";
          ctx.fillRect(point[0] - 2, point[1] - 2, 4, 4);
        }
      }
      handle = requestAnimationFrame(paint);
    };
    handle = requestAnimationFrame(paint);
    return () => cancelAnimationFrame(handle);
  }, [take]);
  if (!take) return html`<p class="loading">Loading the pose…</p>`;
  return html`<div class="overlay">
    <video ref=${player} src=${video} controls muted preload="auto" class="overlay-video"></video>
    <canvas ref=${canvas} class="overlay-canvas" aria-label="tracked pose over the video"></canvas>
    <p class="muted">${take.frames} frames · ${take.landmarks.length} landmarks at ${take.fps} fps</p>
  </div>`;
}
