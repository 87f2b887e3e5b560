// The vfxmocap studio: a client of the public API (through vfxmocap.js) like any other.
import { render } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Client, FINAL_STATES, VfxError } from "./vfxmocap.js";
import { SchemaForm, defaults, html, pruned } from "./form.js";
import { Live } from "./live.js";
import { Results } from "./results.js";

const TOKEN_KEY = "vfx-token";
const client = new Client("", { token: sessionStorage.getItem(TOKEN_KEY) });
const VIEWS = ["dashboard", "create", "jobs", "live"];
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

/** The view named in the location's hash: #/jobs, #/job/ID. */
function useRoute() {
  const read = () => (location.hash.replace(/^#\/?/, "") || "dashboard").split("/");
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

export function formatEta(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    <strong class="code">${error.code}</strong> <span class="message">${error.message}</span>
    ${error.hint && html`<div class="hint">${error.hint}</div>`}
  </div>`;
}

function Login({ onDone, failed }) {
  const [token, setToken] = useState("");
  const [wrong, setWrong] = useState(failed);
  const submit = async (e) => {
    e.preventDefault();
    client.token = token;
    try {
      await client.system();
      sessionStorage.setItem(TOKEN_KEY, token);
      onDone();
    } catch (err) {
      setWrong(err instanceof VfxError && err.status === 401 ? "That token is not this server's." : String(err.message));
    }
  };
  return html`<div class="modal" role="dialog" aria-labelledby="login-title">
    <form class="card login" onSubmit=${submit}>
      <h2 id="login-title">This server needs its API token</h2>
      <p>It is the server's <code>VFX_API_TOKEN</code>; it is kept in this tab only.</p>
      <label for="token">Token</label>
      <input id="token" type="password" autocomplete="current-password" value=${token}
        onInput=${(e) => setToken(e.target.value)} autofocus />
      ${wrong && html`<p class="error" role="alert">${wrong}</p>`}
      <button type="submit">Sign in</button>
    </form>
  </div>`;
}

// ---------------------------------------------------------------- dashboard

function Dashboard({ call }) {
  const [data, setData] = useState(null);
  const load = useCallback(async () => {
    const [system, models, queue, workers] = await Promise.all([
      call(() => client.system()), call(() => client.models()),
      call(() => client.queue()), call(() => client.workers()),
    ]);
    if (system) setData({ system, models, queue, workers });
  }, [call]);
  useEffect(() => { load(); const t = setInterval(load, 5000); return () => clearInterval(t); }, [load]);
  if (!data) return html`<p class="loading">Loading…</p>`;
  const { system, models, queue, workers } = data;
  const d = system.device;
  return html`<section class="grid">
    <div class="card" id="device">
      <h2>Device</h2>
      <p class="device-line"><strong class="device-kind">${d.kind.toUpperCase()}</strong> ${d.name}
        · ${d.memory_gb} GB · ${d.tier}</p>
      <p class="muted">torch device ${d.torch_device} · ONNX ${d.onnx_providers.join(", ")} · ${d.dtype}</p>
      ${d.warnings.map((w) => html`<p class="warning" role="status">${w}</p>`)}
      <p class="muted">vfxmocap ${system.version} · ${system.workers} local worker(s)</p>
    </div>
    <div class="card" id="queue">
      <h2>Queue</h2>
      <ul class="stats">${STATES.map((s) => html`<li class=${"state-" + s}><span>${s}</span><b>${queue.states[s] || 0}</b></li>`)}</ul>
      <p>Workers: ${workers.local.alive} of ${workers.local.slots} alive, ${queue.busy} busy</p>
      ${workers.celery && html`<h3>Celery workers</h3><ul>${workers.celery.map((w) => html`<li>
        <b>${w.name}</b> ${w.busy ? "busy" : "idle"} · ${w.device_spec || w.device || ""}
        ${w.gpu ? w.gpu.name : ""} ${w.memory_gb ? `· ${w.memory_gb} GB` : ""}
        · models ready: ${(w.models || []).length} · runs ${(w.workflows || []).join(", ")}</li>`)}</ul>`}
    </div>
    <div class="card">
      <h2>Expected speed</h2>
      <p class="muted">${system.expected_fps.basis}, at ${system.expected_fps.resolution}</p>
      <table><tbody>${Object.entries(system.expected_fps.fps).map(([w, fps]) => html`<tr><td>${w}</td><td>${fps} fps</td></tr>`)}</tbody></table>
    </div>
    <div class="card wide" id="models">
      <h2>Models</h2>
      <table>
        <thead><tr><th>model</th><th>task</th><th>state</th><th>what to place</th></tr></thead>
        <tbody>${(models || []).map((m) => html`<tr class=${m.ready ? "ready" : "missing"}>
          <td>${m.name}</td><td>${m.task}</td><td>${m.readiness}</td>
          <td>${[...m.missing_files, ...m.corrupt_files].join(", ") || "—"}
            ${!m.ready && html`<div class="muted"><code>vfx models pull ${m.name}</code> or place the files in <code>vfx models path ${m.name}</code></div>`}</td>
        </tr>`)}</tbody>
      </table>
    </div>
  </section>`;
}

// ---------------------------------------------------------------- create

function presetsFor(workflow) {
  try { return JSON.parse(localStorage.getItem(`vfx-presets:${workflow}`) || "{}"); } catch (_) { return {}; }
}

function Presets({ workflow, value, onLoad }) {
  const [all, setAll] = useState(() => presetsFor(workflow));
  const [name, setName] = useState("");
  useEffect(() => setAll(presetsFor(workflow)), [workflow]);
  const store = (next) => { localStorage.setItem(`vfx-presets:${workflow}`, JSON.stringify(next)); setAll(next); };
  return html`<div class="presets">
    <label for="preset-load">Preset</label>
    <select id="preset-load" onChange=${(e) => { if (all[e.target.value]) onLoad(all[e.target.value]); }}>
      <option value="">load…</option>
      ${Object.keys(all).map((n) => html`<option value=${n}>${n}</option>`)}
    </select>
    <input aria-label="preset name" placeholder="name" value=${name} onInput=${(e) => setName(e.target.value)} />
    <button type="button" disabled=${!name} onClick=${() => { store({ ...all, [name]: value }); setName(""); }}>Save preset</button>
    ${Object.keys(all).length > 0 && html`<button type="button" class="link"
      onClick=${() => { const n = document.getElementById("preset-load").value; if (n) { const { [n]: _, ...rest } = all; store(rest); } }}>delete selected</button>`}
  </div>`;
}

function Preview({ workflow, inputs, call }) {
  const [frame, setFrame] = useState(0);
  const [frames, setFrames] = useState(1);
  const [shot, setShot] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = async (at = frame) => {
    setBusy(true); setError(null);
    try {
      const result = await client.preview(workflow.name, inputs, { frame: at });
      setShot(result); setFrames(result.frames);
    } catch (err) {
      if (err instanceof VfxError && err.status === 401) call(() => Promise.reject(err));
      setError(err);
    } finally { setBusy(false); }
  };
  return html`<div class="card preview" id="preview">
    <h2>Preview</h2>
    <p class="muted">The current settings on one frame of <b>${workflow.live.frames}</b>.</p>
    <div class="slider">
      <label for="preview-frame">Frame</label>
      <input id="preview-frame" type="range" min="0" max=${Math.max(0, frames - 1)} value=${frame}
        onInput=${(e) => setFrame(parseInt(e.target.value, 10))}
        onChange=${(e) => run(parseInt(e.target.value, 10))} />
      <output for="preview-frame">${frame}${frames > 1 ? ` / ${frames - 1}` : ""}</output>
    </div>
    <button type="button" onClick=${() => run()} disabled=${busy}>${busy ? "Previewing…" : "Preview frame"}</button>
    <${ErrorBox} error=${error} />
    ${shot && html`<div class="before-after">
      <figure><img id="preview-before" src=${shot.before} alt="before" /><figcaption>before</figcaption></figure>
      <figure><img id="preview-after" src=${shot.after} alt="after" /><figcaption>after · ${shot.elapsed_s} s</figcaption></figure>
    </div>`}
  </div>`;
}

function Create({ call, workflows, initial }) {
  const [name, setName] = useState(initial?.workflow || "");
  const workflow = workflows.find((w) => w.name === name);
  const [value, setValue] = useState({});
  const [priority, setPriority] = useState(0);
  const [backend, setBackend] = useState("auto");
  const [backends, setBackends] = useState([]);
  const [error, setError] = useState(null);
  useEffect(() => { call(() => client.system()).then((s) => s && setBackends(s.backends)); }, []);
  const [queued, setQueued] = useState(null);
  useEffect(() => {
    if (!workflow) return;
    setValue(initial?.workflow === workflow.name ? { ...defaults(workflow.inputs, workflow.inputs), ...initial.inputs } : defaults(workflow.inputs, workflow.inputs));
    setQueued(null); setError(null);
  }, [name]);
  const submit = async (e) => {
    e.preventDefault(); setError(null);
    try {
      const job = await client.submit(workflow.name, pruned(value), { priority, backend });
      setQueued(job);
      location.hash = "#/jobs";
    } catch (err) {
      if (err instanceof VfxError && err.status === 401) call(() => Promise.reject(err));
      setError(err);
    }
  };
  return html`<section class="create">
    <div class="card">
      <h2>Create</h2>
      <label for="workflow">Workflow</label>
      <select id="workflow" value=${name} onChange=${(e) => setName(e.target.value)}>
        <option value="">choose…</option>
        ${workflows.map((w) => html`<option value=${w.name}>${w.name} — ${w.summary}</option>`)}
      </select>
      ${workflow && !workflow.here.ready && html`<p class="warning">${workflow.here.missing?.join?.("; ") || "not ready here"} ${workflow.here.fix || ""}</p>`}
    </div>
    ${workflow && html`<form class="card" id="job-form" onSubmit=${submit}>
      <${SchemaForm} key=${workflow.name} schema=${workflow.inputs} files=${workflow.files}
        value=${value} onChange=${setValue} client=${client} onError=${setError} />
      <div class="field"><label for="priority">Priority</label>
        <span class="slider"><input id="priority" type="range" min="-100" max="100" value=${priority}
          onInput=${(e) => setPriority(parseInt(e.target.value, 10))} /><output>${priority}</output></span>
        <small class="help">Higher runs first.</small></div>
      ${backends.length > 1 && html`<div class="field"><label for="backend">Backend</label>
        <select id="backend" value=${backend} onChange=${(e) => setBackend(e.target.value)}>
          <option value="auto">auto (${backends.join(" → ")})</option>
          ${backends.map((b) => html`<option value=${b}>${b}</option>`)}
        </select><small class="help">Where the job runs; the job shows the route it took.</small></div>`}
      <${Presets} workflow=${workflow.name} value=${value} onLoad=${(v) => setValue({ ...defaults(workflow.inputs, workflow.inputs), ...v })} />
      <${ErrorBox} error=${error} />
      <button type="submit" class="primary">Queue ${workflow.name}</button>
      ${queued && html`<p>Queued ${queued.id}</p>`}
    </form>`}
    ${workflow && workflow.live && workflow.live.frames && html`<${Preview} workflow=${workflow} inputs=${pruned(value)} call=${call} />`}
  </section>`;
}

// ---------------------------------------------------------------- jobs

function JobCard({ job, act, preview }) {
  const percent = job.percent ?? (job.state === "succeeded" ? 100 : 0);
  const final = FINAL_STATES.has(job.state);
  return html`<li class=${"job state-" + job.state} data-job=${job.id} data-state=${job.state}>
    <div class="job-head">
      <b class="workflow">${job.workflow}</b>
      <span class="badge">${job.state}</span>
      <span class="muted">${job.progress?.stage || ""}</span>
      <span class="muted id">${job.id.slice(0, 8)}</span>
    </div>
    ${!final || job.state === "succeeded" ? html`<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"
        aria-valuenow=${Math.round(percent)} data-percent=${percent}>
        <div style=${`width:${percent}%`}></div></div>
      <div class="muted">${Math.round(percent)}%${job.state === "running" && job.eta_s != null ? ` · ETA ${formatEta(job.eta_s)}` : ""}
        ${job.position != null ? ` · position ${job.position}` : ""}${job.backend ? ` · on ${job.backend}${job.route ? `: ${job.route}` : ""}` : ""}</div>` : null}
    ${preview && job.state === "running" && html`<img class="live-thumb" src=${preview} alt="preview of the job's current frame" />`}
    ${job.error && html`<${ErrorBox} error=${job.error} />`}
    <div class="actions">
      ${!final && html`<button type="button" class="cancel" onClick=${() => act("cancel", job)}>Cancel</button>`}
      ${(job.state === "failed" || job.state === "cancelled") && html`<button type="button" onClick=${() => act("retry", job)}>Retry</button>`}
      ${final && html`<button type="button" onClick=${() => act("rerun", job)}>Re-run</button>`}
      ${final && html`<button type="button" onClick=${() => act("edit", job)}>Edit & re-run</button>`}
      ${final && html`<button type="button" class="danger" onClick=${() => act("delete", job)}>Delete</button>`}
      ${job.state === "succeeded" && html`<a class="button" href=${`#/job/${job.id}`}>Results</a>`}
    </div>
  </li>`;
}

function Jobs({ live, call }) {
  const { jobs, filters, setFilters, more, nextCursor, previews, connected } = live;
  const act = async (what, job) => {
    if (what === "cancel") await call(() => client.cancel(job.id));
    else if (what === "retry") await call(() => client.retry(job.id));
    else if (what === "delete") await call(() => client.remove(job.id));
    else if (what === "rerun") await call(() => client.submit(job.workflow, job.inputs, { priority: job.priority }));
    else if (what === "edit") { sessionStorage.setItem("vfx-edit", JSON.stringify(job)); location.hash = "#/create"; }
    live.refresh(job.id);
  };
  const cancelQueued = async () => {
    const queued = await call(() => client.jobs({ state: "queued", limit: 500 }));
    for (const job of queued?.jobs || []) await call(() => client.cancel(job.id));
  };
  return html`<section>
    <div class="card toolbar">
      <label for="filter-state">State</label>
      <select id="filter-state" value=${filters.state} onChange=${(e) => setFilters({ ...filters, state: e.target.value })}>
        <option value="">all</option>${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
      <label for="filter-workflow">Workflow</label>
      <select id="filter-workflow" value=${filters.workflow} onChange=${(e) => setFilters({ ...filters, workflow: e.target.value })}>
        <option value="">all</option>${live.workflows.map((w) => html`<option value=${w.name}>${w.name}</option>`)}
      </select>
      <button type="button" onClick=${cancelQueued}>Cancel all queued</button>
      <span class=${"socket " + (connected ? "on" : "off")} role="status">${connected ? "live" : "reconnecting…"}</span>
    </div>
    <ul class="jobs">${jobs.map((j) => html`<${JobCard} key=${j.id} job=${j} act=${act} preview=${previews[j.id]} />`)}</ul>
    ${jobs.length === 0 && html`<p class="muted">No jobs yet: create one.</p>`}
    ${nextCursor != null && html`<button type="button" onClick=${more}>Load more</button>`}
  </section>`;
}

/** Jobs kept current over WS /api/ws: a resync on every (re)connect, events in between. */
function useLiveJobs(call, enabled) {
  const [jobs, setJobs] = useState([]);
  const [filters, setFilters] = useState({ state: "", workflow: "" });
  const [nextCursor, setNextCursor] = useState(null);
  const [previews, setPreviews] = useState({});
  const [connected, setConnected] = useState(false);
  const filtersRef = useRef(filters);
  filtersRef.current = filters;
  const matches = (job) => (!filtersRef.current.state || job.state === filtersRef.current.state)
    && (!filtersRef.current.workflow || job.workflow === filtersRef.current.workflow);
  const resync = useCallback(async () => {
    const page = await call(() => client.jobs({ ...filtersRef.current, limit: 50 }));
    if (page) { setJobs(page.jobs); setNextCursor(page.next_cursor); }
  }, [call]);
  const refresh = useCallback(async (id) => {
    try {
      const job = await client.job(id);
      setJobs((now) => {
        const rest = now.filter((j) => j.id !== id);
        if (!matches(job)) return rest;
        return now.some((j) => j.id === id) ? now.map((j) => (j.id === id ? job : j)) : [job, ...rest];
      });
    } catch (err) {
      if (err.code === "not_found") setJobs((now) => now.filter((j) => j.id !== id));
    }
  }, []);
  useEffect(() => { if (enabled) resync(); }, [filters, enabled]);
  useEffect(() => {
    if (!enabled) return undefined;
    const socket = client.events({
      onOpen: () => { setConnected(true); resync(); },
      onClose: () => setConnected(false),
      onEvent: (e) => {
        if (e.type === "progress" || e.type === "preview") {
          setJobs((now) => now.map((j) => (j.id === e.job_id
            ? { ...j, state: "running", percent: e.percent, eta_s: e.eta_s, progress: { ...j.progress, stage: e.stage } }
            : j)));
          if (e.type === "preview") setPreviews((p) => ({ ...p, [e.job_id]: `data:${e.mime};base64,${e.image}` }));
        } else if (e.type === "deleted") {
          setJobs((now) => now.filter((j) => j.id !== e.job_id));
        } else {
          refresh(e.job_id);
        }
      },
    });
    return () => socket.close();
  }, [enabled]);
  const more = async () => {
    const page = await call(() => client.jobs({ ...filters, limit: 50, cursor: nextCursor }));
    if (page) { setJobs((now) => [...now, ...page.jobs]); setNextCursor(page.next_cursor); }
  };
  return { jobs, filters, setFilters, nextCursor, more, previews, connected, refresh };
}

function useTitle(jobs) {
  useEffect(() => {
    const running = jobs.filter((j) => j.state === "running");
    const percent = running.length ? running.reduce((a, j) => a + (j.percent || 0), 0) / running.length : null;
    document.title = percent === null ? "vfxmocap studio" : `(${Math.round(percent)}%) vfxmocap studio`;
  }, [jobs]);
}

// ---------------------------------------------------------------- app

function App() {
  const route = useRoute();
  const [login, setLogin] = useState(null); // null, or why
  const [ready, setReady] = useState(false);
  const [workflows, setWorkflows] = useState([]);
  const [problem, setProblem] = useState(null);
  const call = useCallback(async (fn) => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof VfxError && err.status === 401) { setLogin(client.token ? "The stored token was refused." : ""); setReady(false); }
      else setProblem(err);
      return null;
    }
  }, []);
  const start = useCallback(async () => {
    const flows = await call(() => client.workflows());
    if (flows) { setWorkflows(flows); setReady(true); setLogin(null); }
  }, [call]);
  useEffect(() => { start(); }, []);
  const live = useLiveJobs(call, ready);
  live.workflows = workflows;
  useTitle(live.jobs);
  const view = route[0];
  const edit = useMemo(() => {
    const saved = sessionStorage.getItem("vfx-edit");
    sessionStorage.removeItem("vfx-edit");
    return saved ? JSON.parse(saved) : null;
  }, [route.join("/")]);
  let body = null;
  if (ready) {
    if (view === "create") body = html`<${Create} key=${edit?.id || "new"} call=${call} workflows=${workflows} initial=${edit} />`;
    else if (view === "jobs") body = html`<${Jobs} live=${live} call=${call} />`;
    else if (view === "job") body = html`<${Results} client=${client} id=${route[1]} call=${call} workflows=${workflows} />`;
    else if (view === "live") body = html`<${Live} client=${client} workflows=${workflows} />`;
    else body = html`<${Dashboard} call=${call} />`;
  }
  const running = live.jobs.filter((j) => j.state === "running").length;
  return html`<header>
      <h1><a href="#/dashboard">vfxmocap <span>studio</span></a></h1>
      <nav aria-label="views">${VIEWS.map((v) => html`<a href=${"#/" + v} aria-current=${view === v ? "page" : undefined}>
        ${v}${v === "jobs" && running ? html` <span class="count">${running}</span>` : ""}</a>`)}</nav>
    </header>
    <main>
      ${problem && html`<div class="toast" role="alert" onClick=${() => setProblem(null)}>
        <${ErrorBox} error=${problem} /><small>click to dismiss</small></div>`}
      ${body}
    </main>
    ${login !== null && html`<${Login} failed=${login} onDone=${start} />`}`;
}

const root = document.getElementById("app");
root.textContent = ""; // the "Loading" line
render(html`<${App} />`, root);
