// A form generated from a workflow's JSON schema (pydantic's), so a new workflow needs no
// UI code: enums become selects, bounded numbers sliders, booleans toggles, nested models
// collapsible groups, descriptions help text, and the workflow's file fields drop zones
// that upload as soon as a file is dropped.
import { h } from "preact";
import { useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);

/** Follow `$ref`, `allOf: [one]` and nullable `anyOf: [X, null]` to the schema that matters. */
export function resolve(schema, root) {
  let s = schema || {};
  let nullable = false;
  for (let i = 0; i < 10; i++) {
    if (s.$ref) {
      const name = s.$ref.split("/").pop();
      const { $ref, ...rest } = s;
      s = { ...root.$defs[name], ...rest };
    } else if (s.allOf && s.allOf.length === 1) {
      const { allOf, ...rest } = s;
      s = { ...allOf[0], ...rest };
    } else if (s.anyOf) {
      const options = s.anyOf.filter((o) => o.type !== "null");
      if (options.length !== 1) break;
      nullable = nullable || options.length < s.anyOf.length;
      const { anyOf, ...rest } = s;
      s = { ...options[0], ...rest };
    } else break;
  }
  return { ...s, nullable: nullable || s.nullable };
}

/** Fields the server fills in itself (outputs placed in the job's folder). */
function serverSet(s) {
  return s.format === "path";
}

/** The schema's defaults, nested. */
export function defaults(schema, root) {
  const s = resolve(schema, root);
  const value = {};
  for (const [name, field] of Object.entries(s.properties || {})) {
    const f = resolve(field, root);
    if (serverSet(f)) continue;
    if (f.type === "object" && f.properties) value[name] = { ...defaults(f, root), ...(f.default || {}) };
    else if (f.default !== undefined) value[name] = f.default;
  }
  return value;
}

/** Inputs as the API takes them: empty optional values left out. */
export function pruned(value) {
  const out = {};
  for (const [k, v] of Object.entries(value || {})) {
    if (v === undefined || v === "" || v === null) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    out[k] = v && typeof v === "object" && !Array.isArray(v) ? pruned(v) : v;
  }
  return out;
}

const label = (name) => name.replace(/_$/, "").replace(/_/g, " ");

/** One upload drop zone: thumbnails, a progress bar per file, the upload ids as value. */
function FileDrop({ id, name, multiple, value, onChange, client, onError }) {
  const [items, setItems] = useState([]); // {file, url, progress, id}
  const [over, setOver] = useState(false);
  const ids = multiple ? value || [] : value ? [value] : [];
  const add = (files) => {
    const chosen = multiple ? [...files] : [...files].slice(0, 1);
    for (const file of chosen) {
      const item = { file, url: URL.createObjectURL(file), progress: 0, id: null };
      setItems((now) => (multiple ? [...now, item] : [item]));
      client
        .upload(file, {
          onProgress: (p) => { item.progress = p; setItems((now) => [...now]); },
        })
        .then((meta) => {
          item.id = meta.id;
          item.kind = meta.kind;
          setItems((now) => [...now]);
          onChange(multiple ? [...(ids || []), meta.id] : meta.id);
          ids.push(meta.id);
        })
        .catch((err) => {
          setItems((now) => now.filter((i) => i !== item));
          onError(err);
        });
    }
  };
  const clear = () => { setItems([]); onChange(multiple ? [] : null); };
  return html`<div
      class=${"drop" + (over ? " over" : "")}
      data-field=${name}
      onDragOver=${(e) => { e.preventDefault(); setOver(true); }}
      onDragLeave=${() => setOver(false)}
      onDrop=${(e) => { e.preventDefault(); setOver(false); add(e.dataTransfer.files); }}>
    <label for=${id}>Drop ${multiple ? "files" : "a file"} here or <u>choose</u></label>
    <input id=${id} type="file" multiple=${multiple} accept="image/*,video/*"
      onChange=${(e) => add(e.target.files)} />
    <div class="thumbs">
      ${items.map((i) => html`<figure class="thumb">
        ${i.file.type.startsWith("video")
          ? html`<video src=${i.url} muted preload="metadata"></video>`
          : html`<img src=${i.url} alt=${i.file.name} />`}
        <progress class="upload-progress" max="1" value=${i.progress}></progress>
        <figcaption>${i.file.name}${i.id ? " ✓" : ""}</figcaption>
      </figure>`)}
    </div>
    ${items.length > 0 && html`<button type="button" class="link" onClick=${clear}>clear</button>`}
  </div>`;
}

function Field({ name, path, schema, root, value, onChange, ctx }) {
  const s = resolve(schema, root);
  const id = "f-" + path.join("-");
  const help = s.description ? html`<small class="help">${s.description}</small>` : null;
  const isFile = path.length === 1 && ctx.files.includes(name);
  if (serverSet(s)) return null;
  if (isFile) {
    return html`<div class="field">
      <span class="label">${label(name, s)}${ctx.required.includes(name) ? " *" : ""}</span>
      <${FileDrop} id=${id} name=${name} multiple=${s.type === "array"} value=${value}
        onChange=${onChange} client=${ctx.client} onError=${ctx.onError} />
      ${help}
    </div>`;
  }
  if (s.type === "object" && s.properties) {
    return html`<details class="group" data-field=${name}>
      <summary>${label(name, s)}</summary>
      ${help}
      <${Fields} schema=${s} root=${root} value=${value || {}} path=${path}
        onChange=${onChange} ctx=${{ ...ctx, required: s.required || [] }} />
    </details>`;
  }
  let input;
  if (s.enum) {
    input = html`<select id=${id} value=${value ?? ""} onChange=${(e) => {
      const v = e.target.value;
      onChange(v === "" ? null : s.enum.find((x) => String(x) === v));
    }}>
      ${s.nullable && html`<option value="">(none)</option>`}
      ${s.enum.map((x) => html`<option value=${String(x)}>${String(x)}</option>`)}
    </select>`;
  } else if (s.type === "boolean") {
    input = html`<input id=${id} type="checkbox" role="switch" class="toggle"
      checked=${!!value} onChange=${(e) => onChange(e.target.checked)} />`;
  } else if (s.type === "number" || s.type === "integer") {
    const min = s.minimum ?? s.exclusiveMinimum;
    const max = s.maximum ?? s.exclusiveMaximum;
    const step = s.type === "integer" ? 1 : max !== undefined && min !== undefined ? (max - min) / 100 : "any";
    const parse = (v) => (v === "" ? null : s.type === "integer" ? parseInt(v, 10) : parseFloat(v));
    if (min !== undefined && max !== undefined && max - min <= 10000) {
      input = html`<span class="slider"><input id=${id} type="range" min=${min} max=${max} step=${step}
        value=${value ?? min} onInput=${(e) => onChange(parse(e.target.value))} />
        <output for=${id}>${value ?? "—"}</output></span>`;
    } else {
      input = html`<input id=${id} type="number" min=${min} max=${max} step=${step}
        value=${value ?? ""} onInput=${(e) => onChange(parse(e.target.value))} />`;
    }
  } else if (s.type === "array") {
    const items = resolve(s.items || {}, root);
    const numeric = items.type === "number" || items.type === "integer";
    input = html`<input id=${id} type="text" placeholder="comma-separated"
      value=${(value || []).join(", ")}
      onChange=${(e) => onChange(e.target.value.split(",").map((x) => x.trim()).filter(Boolean)
        .map((x) => (numeric ? Number(x) : x)))} />`;
  } else if (s.type === "string") {
    input = html`<input id=${id} type="text" pattern=${s.pattern} value=${value ?? ""}
      onInput=${(e) => onChange(e.target.value)} />`;
  } else {
    input = html`<textarea id=${id} rows="2" placeholder="JSON"
      onChange=${(e) => { try { onChange(JSON.parse(e.target.value)); } catch (_) { ctx.onError(new Error(`${name}: not JSON`)); } }}
    >${value === undefined ? "" : JSON.stringify(value)}</textarea>`;
  }
  return html`<div class="field" data-field=${name}>
    <label for=${id}>${label(name, s)}${ctx.required.includes(name) ? " *" : ""}</label>
    ${input}
    ${help}
  </div>`;
}

function Fields({ schema, root, value, onChange, path, ctx }) {
  const s = resolve(schema, root);
  return html`${Object.entries(s.properties || {}).map(([name, field]) => html`<${Field}
    key=${name} name=${name} path=${[...path, name]} schema=${field} root=${root}
    value=${value[name]} ctx=${ctx}
    onChange=${(v) => onChange({ ...value, [name]: v })} />`)}`;
}

/**
 * The whole form for one workflow. `files`: its file fields (upload drop zones).
 * @param {{schema: any, files: string[], value: any, onChange: (v: any) => void,
 *   client: any, onError: (e: Error) => void}} props
 */
export function SchemaForm({ schema, files, value, onChange, client, onError }) {
  const ctx = { files, client, onError, required: schema.required || [] };
  return html`<div class="schema-form">
    <${Fields} schema=${schema} root=${schema} value=${value} onChange=${onChange} path=${[]} ctx=${ctx} />
  </div>`;
}
