// A job's results: each output shown by what it is (video player, image, text), downloads,
// and the job's log.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "./form.js";
import { BvhPlayer, CsvCurves, PoseOverlay } from "./viewers.js";

/** What an output is: its content type and file name, from a one-byte range request. */
async function describe(client, id, name) {
  const response = await fetch(client.outputUrl(id, name), { headers: { Range: "bytes=0-0" } });
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename\*?=(?:utf-8'')?"?([^";]+)"?/i.exec(disposition);
  await response.arrayBuffer();
  return {
    name,
    type: (response.headers.get("content-type") || "").split(";")[0],
    file: match ? decodeURIComponent(match[1]) : name,
  };
}

/** The input a frame workflow turned (its `live.frames` field), beside its output: a video
 * follows the output's play, pause and seeks. */
function Before({ url, output, outputRef }) {
  const before = useRef(null);
  useEffect(() => {
    const out = outputRef.current, b = before.current;
    if (!out || !b || !output.type.startsWith("video")) return undefined;
    const follow = () => { b.currentTime = out.currentTime; if (out.paused) b.pause(); else b.play().catch(() => {}); };
    const events = ["play", "pause", "seeked"];
    events.forEach((e) => out.addEventListener(e, follow));
    return () => events.forEach((e) => out.removeEventListener(e, follow));
  }, [url]);
  return output.type.startsWith("video")
    ? html`<video ref=${before} class="result-before" muted preload="metadata" src=${url}></video>`
    : html`<img class="result-before" src=${url} alt="before" />`;
}

function Output({ client, job, output, before }) {
  const outputRef = useRef(null);
  const url = client.outputUrl(job.id, output.name);
  const [text, setText] = useState(null);
  // A pose track (the mocap JSON schema) over the input it was tracked on.
  const pose = before && text !== null && text.startsWith('{"schema":"vfxmocap.mocap/');
  const kind = /\.bvh$/i.test(output.file) ? "bvh" : /\.csv$/i.test(output.file) ? "csv" : pose ? "pose" : null;
  const textual = /json|text/.test(output.type) || /\.(json|txt)$/.test(output.file);
  useEffect(() => {
    if (!textual || output.type.startsWith("video") || output.type.startsWith("image")) return;
    fetch(url).then((r) => r.text()).then((t) => setText(t.length > 4000 ? t.slice(0, 4000) + "\n…" : t));
  }, [url]);
  let view = null;
  if (kind === "bvh") {
    view = html`<${BvhPlayer} url=${url} />`;
  } else if (kind === "csv") {
    view = html`<${CsvCurves} url=${url} />`;
  } else if (kind === "pose") {
    view = html`<${PoseOverlay} url=${url} video=${before} />`;
  } else if (output.type.startsWith("video")) {
    view = html`<video ref=${outputRef} class="result-video" controls preload="metadata" src=${url}></video>`;
  } else if (output.type.startsWith("image")) {
    view = html`<img class="result-image" src=${url} alt=${output.file} />`;
  } else if (text !== null) {
    view = html`<pre class="result-text">${text}</pre>`;
  }
  if (before && (output.type.startsWith("video") || output.type.startsWith("image"))) {
    view = html`<div class="before-after">
      <figure><${Before} url=${before} output=${output} outputRef=${outputRef} /><figcaption>before</figcaption></figure>
      <figure>${view}<figcaption>after</figcaption></figure></div>`;
  }
  return html`<figure class="card output" data-output=${output.name}>
    <figcaption><b>${output.name}</b> <span class="muted">${output.file} · ${output.type || "file"}</span>
      <a class="button" href=${url} download=${output.file}>Download</a></figcaption>
    ${view}
  </figure>`;
}

export function Results({ client, id, call, workflows }) {
  const [job, setJob] = useState(null);
  const [outputs, setOutputs] = useState([]);
  const [log, setLog] = useState("");
  useEffect(() => {
    (async () => {
      const found = await call(() => client.job(id));
      if (!found) return;
      setJob(found);
      setOutputs(await Promise.all(found.outputs.map((name) => describe(client, id, name))));
      setLog((await call(() => client.log(id))) || "");
    })();
  }, [id]);
  if (!job) return html`<p class="loading">Loading…</p>`;
  const field = workflows.find((w) => w.name === job.workflow)?.live?.frames;
  const input = field && typeof job.inputs[field] === "string" ? client.uploadUrl(job.inputs[field]) : null;
  return html`<section class="results">
    <div class="card">
      <h2>${job.workflow} <span class="badge">${job.state}</span></h2>
      <p class="muted">${job.id}</p>
      ${job.backend && html`<p class="route" data-backend=${job.backend}>Ran on <b>${job.backend}</b>${job.route ? html`: <span class="muted">${job.route}</span>` : ""}</p>`}
      ${job.summary && html`<pre class="summary">${JSON.stringify(job.summary, null, 1)}</pre>`}
    </div>
    ${outputs.map((o) => html`<${Output} key=${o.name} client=${client} job=${job} output=${o} before=${input} />`)}
    <details class="card"><summary>Log</summary><pre class="log">${log}</pre></details>
  </section>`;
}
