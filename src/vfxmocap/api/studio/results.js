// A job's results: each output shown by what it is (video player, image, text), downloads,
// and the job's log.
import { useEffect, useState } from "preact/hooks";
import { html } from "./form.js";
import { BvhPlayer, CsvCurves } from "./viewers.js";

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

function Output({ client, job, output }) {
  const url = client.outputUrl(job.id, output.name);
  const [text, setText] = useState(null);
  const kind = /\.bvh$/i.test(output.file) ? "bvh" : /\.csv$/i.test(output.file) ? "csv" : null;
  const textual = /json|text/.test(output.type) || /\.(json|txt)$/.test(output.file);
  useEffect(() => {
    if (kind || !textual || output.type.startsWith("video") || output.type.startsWith("image")) return;
    fetch(url).then((r) => r.text()).then((t) => setText(t.length > 4000 ? t.slice(0, 4000) + "\n…" : t));
  }, [url]);
  let view = null;
  if (kind === "bvh") {
    view = html`<${BvhPlayer} url=${url} />`;
  } else if (kind === "csv") {
    view = html`<${CsvCurves} url=${url} />`;
  } else if (output.type.startsWith("video")) {
    view = html`<video class="result-video" controls preload="metadata" src=${url}></video>`;
  } else if (output.type.startsWith("image")) {
    view = html`<img class="result-image" src=${url} alt=${output.file} />`;
  } else if (text !== null) {
    view = html`<pre class="result-text">${text}</pre>`;
  }
  return html`<figure class="card output" data-output=${output.name}>
    <figcaption><b>${output.name}</b> <span class="muted">${output.file} · ${output.type || "file"}</span>
      <a class="button" href=${url} download=${output.file}>Download</a></figcaption>
    ${view}
  </figure>`;
}

export function Results({ client, id, call }) {
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
  return html`<section class="results">
    <div class="card">
      <h2>${job.workflow} <span class="badge">${job.state}</span></h2>
      <p class="muted">${job.id} · ${job.route || ""}</p>
      ${job.summary && html`<pre class="summary">${JSON.stringify(job.summary, null, 1)}</pre>`}
    </div>
    ${outputs.map((o) => html`<${Output} key=${o.name} client=${client} job=${job} output=${o} />`)}
    <details class="card"><summary>Log</summary><pre class="log">${log}</pre></details>
  </section>`;
}
