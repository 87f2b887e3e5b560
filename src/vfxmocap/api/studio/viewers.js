// Viewers for motion outputs: a 3-D BVH skeleton player (three.js, WebGL), CSV curves (Live
// Link Face blendshapes, keypoints) and a pose JSON drawn over its video (2-D canvases).
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "./form.js";

const BONE = 0x4ea1ff;
const JOINT = 0xffd166;

/** A BVH take in 3-D: three.js's BVHLoader builds the skeleton and its animation clip, a
 * SkeletonHelper draws the bones, OrbitControls orbit / zoom / pan with the pointer (arrow
 * keys orbit too), and play / pause / a frame slider scrub it. three.js (about 2 MB) loads
 * only when a BVH is shown. */
export function BvhPlayer({ url }) {
  const canvas = useRef(null);
  const player = useRef(null); // the three.js objects, once loaded
  const [take, setTake] = useState(null); // { joints, frames }
  const [failed, setFailed] = useState(null);
  const [frame, setFrame] = useState(0);
  const [playing, setPlaying] = useState(true);
  useEffect(() => {
    let closed = false;
    (async () => {
      const [THREE, { BVHLoader }, { OrbitControls }, text] = await Promise.all([
        import("three"),
        import("three/addons/loaders/BVHLoader.js"),
        import("three/addons/controls/OrbitControls.js"),
        fetch(url).then((r) => r.text()),
      ]);
      if (closed || !canvas.current) return;
      player.current = start(THREE, BVHLoader, OrbitControls, text, canvas.current, setFrame);
      setTake(player.current.take);
    })().catch((e) => setFailed(e.message || String(e)));
    return () => { closed = true; if (player.current) player.current.close(); player.current = null; };
  }, [url]);
  // Told to the player at once, not in an effect after the next paint: a scrub lands on the
  // frame asked for, not a frame or two past it.
  const play = (on) => { setPlaying(on); if (player.current) player.current.playing = on; };
  const scrub = (index) => { play(false); player.current.seek(index); };
  const keys = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] };
  return html`<div class="bvh">
    <canvas ref=${canvas} class="bvh-canvas" width="480" height="360" tabindex="0"
      aria-label="3-D skeleton: drag to orbit, wheel to zoom, right-drag to pan, arrow keys orbit"
      data-joints=${take ? take.joints : ""} data-frames=${take ? take.frames : ""}
      onKeyDown=${(e) => { const k = keys[e.key]; if (k && player.current) { e.preventDefault(); player.current.orbit(...k); } }} />
    ${failed ? html`<p class="error" role="alert">The skeleton cannot be shown: ${failed}</p>`
      : !take ? html`<p class="loading">Loading the skeleton…</p>`
      : html`<div class="slider">
      <button type="button" onClick=${() => play(!playing)}>${playing ? "Pause" : "Play"}</button>
      <input type="range" aria-label="frame" min="0" max=${take.frames - 1} value=${frame}
        onInput=${(e) => scrub(parseInt(e.target.value, 10))} />
      <output>${frame + 1} / ${take.frames}</output>
    </div>`}
  </div>`;
}

/** The scene of one take on `canvas`: drawn when it changes (a frame, an orbit), not on every
 * animation frame, so a paused player costs nothing. */
function start(THREE, BVHLoader, OrbitControls, text, canvas, onFrame) {
  const { skeleton, clip } = new BVHLoader().parse(text);
  const times = clip.tracks.length ? clip.tracks[0].times : [0];
  const frames = times.length;
  const frameTime = frames > 1 ? times[1] - times[0] : 1 / 30;
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.setSize(canvas.width, canvas.height, false);
  renderer.setClearColor(0x0d0f12);
  const scene = new THREE.Scene();
  const body = new THREE.Group();
  body.add(skeleton.bones[0]);
  scene.add(body);
  const bones = new THREE.SkeletonHelper(skeleton.bones[0]);
  bones.setColors(new THREE.Color(BONE), new THREE.Color(BONE));
  scene.add(bones);
  const points = new THREE.BufferGeometry();
  points.setAttribute("position", new THREE.Float32BufferAttribute(new Float32Array(skeleton.bones.length * 3), 3));
  const joints = new THREE.Points(points, new THREE.PointsMaterial({ color: JOINT, size: 5, sizeAttenuation: false }));
  scene.add(joints);
  const mixer = new THREE.AnimationMixer(body);
  mixer.clipAction(clip).play();
  const place = () => {
    body.updateMatrixWorld(true);
    const at = new THREE.Vector3();
    skeleton.bones.forEach((bone, k) => { bone.getWorldPosition(at); points.attributes.position.setXYZ(k, at.x, at.y, at.z); });
    points.attributes.position.needsUpdate = true;
    points.computeBoundingSphere();
  };
  mixer.setTime(0);
  place();
  // Framed on the first frame, the floor under it: the take moves inside a still view.
  const box = new THREE.Box3().setFromBufferAttribute(points.attributes.position);
  const centre = box.getCenter(new THREE.Vector3());
  const size = Math.max(...box.getSize(new THREE.Vector3()).toArray(), 1e-3);
  const floor = new THREE.GridHelper(size * 4, 16, 0x3a4150, 0x22262e);
  floor.position.set(centre.x, box.min.y, centre.z);
  scene.add(floor);
  const camera = new THREE.PerspectiveCamera(40, canvas.width / canvas.height, size / 100, size * 100);
  camera.position.set(centre.x + size * 0.9, centre.y + size * 0.35, centre.z + size * 1.8);
  const controls = new OrbitControls(camera, canvas);
  controls.target.copy(centre);
  controls.update();
  let dirty = true, handle = 0, last = performance.now(), time = 0, shown = 0;
  controls.addEventListener("change", () => { dirty = true; });
  const state = {
    take: { joints: skeleton.bones.length, frames },
    playing: true,
    seek(index) {
      time = Math.max(0, Math.min(frames - 1, index)) * frameTime;
      dirty = true;
    },
    orbit(dAzimuth, dPolar) {
      const offset = camera.position.clone().sub(controls.target);
      const turn = new THREE.Spherical().setFromVector3(offset);
      turn.theta += dAzimuth;
      turn.phi = Math.max(0.05, Math.min(Math.PI - 0.05, turn.phi + dPolar));
      camera.position.copy(controls.target).add(offset.setFromSpherical(turn));
      controls.update();
      dirty = true;
    },
    close() {
      cancelAnimationFrame(handle);
      controls.dispose();
      points.dispose();
      renderer.dispose();
    },
  };
  const tick = (now) => {
    if (state.playing && frames > 1) {
      time = (time + (now - last) / 1000) % (frames * frameTime);
      dirty = true;
    }
    last = now;
    if (dirty) {
      mixer.setTime(time);
      place();
      renderer.render(scene, camera);
      canvas.dataset.renders = String(Number(canvas.dataset.renders || 0) + 1);
      canvas.dataset.frame = String(Math.min(frames - 1, Math.floor(time / frameTime + 1e-6)));
      const index = Number(canvas.dataset.frame);
      if (index !== shown) { shown = index; onFrame(index); }
      dirty = false;
    }
    handle = requestAnimationFrame(tick);
  };
  handle = requestAnimationFrame(tick);
  return state;
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
    <div class="overlay-frame">
      <video ref=${player} src=${video} controls muted preload="auto" class="overlay-video"></video>
      <canvas ref=${canvas} class="overlay-canvas" aria-label="tracked pose over the video"></canvas>
    </div>
    <p class="muted">${take.frames} frames · ${take.landmarks.length} landmarks at ${take.fps} fps</p>
  </div>`;
}
