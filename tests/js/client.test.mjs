// vfxmocap.js against a real `vfx serve` (started by tests/test_studio.py, which passes its
// address, its API token and sample media paths in the environment).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { Client, VfxError } from "../../src/vfxmocap/api/studio/vfxmocap.js";

const URL_ = process.env.VFX_URL;
const vfx = new Client(URL_, { token: process.env.VFX_TOKEN });

async function file(path) {
  return new File([await readFile(path)], basename(path));
}

test("a wrong token is a typed error with a hint", async () => {
  const stranger = new Client(URL_, { token: "wrong" });
  await assert.rejects(stranger.system(), (err) => {
    assert.ok(err instanceof VfxError);
    assert.equal(err.status, 401);
    assert.equal(err.code, "unauthorized");
    assert.match(err.hint, /Bearer/);
    return true;
  });
});

test("system, workflows and models", async () => {
  const system = await vfx.system();
  assert.ok(["cpu", "cuda", "mps"].includes(system.device.kind));
  const flows = await vfx.workflows();
  const swap = flows.find((w) => w.name === "swap");
  assert.deepEqual(swap.files, ["sources", "target", "references"]);
  assert.equal(swap.live.frames, "target");
  assert.ok((await vfx.models()).some((m) => m.name === "mediapipe-face-mesh"));
});

test("upload, submit, follow to the end, download", async () => {
  const progress = [];
  const stamp = await vfx.upload(await file(process.env.VFX_FACE), { onProgress: (p) => progress.push(p) });
  const target = await vfx.upload(await file(process.env.VFX_IMAGE));
  assert.equal(stamp.kind, "image");
  assert.equal(progress.at(-1), 1);
  const job = await vfx.submit("stamp", { image: stamp.id, target: target.id, size: 24 }, { priority: 5 });
  const events = [];
  const done = await vfx.wait(job.id, { onEvent: (e) => events.push(e.type) });
  assert.equal(done.state, "succeeded", JSON.stringify(done.error));
  assert.deepEqual(done.outputs, ["output"]);
  const response = await fetch(vfx.outputUrl(job.id, "output")); // the token rides in the URL
  const bytes = new Uint8Array(await response.arrayBuffer());
  assert.deepEqual([...bytes.slice(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
  assert.ok((await vfx.log(job.id)).length >= 0);
});

test("cancel a running job; its events say so", async () => {
  const job = await vfx.submit("sleep", { seconds: 30 });
  const seen = [];
  let cancelled = false;
  const done = await vfx.wait(job.id, {
    onEvent: (e) => {
      seen.push(e.type);
      if (e.type === "progress" && !cancelled) { cancelled = true; vfx.cancel(job.id); }
    },
  });
  assert.equal(done.state, "cancelled");
  assert.ok(seen.includes("progress") && seen.includes("cancelled"), seen.join(","));
});

test("a failure carries its code, message and hint", async () => {
  const job = await vfx.submit("sleep", { fail: "input" });
  const done = await vfx.wait(job.id);
  assert.equal(done.state, "failed");
  assert.equal(done.error.code, "input_error");
  assert.match(done.error.message, /wrong on purpose/);
  assert.ok(done.error.hint.length > 0);
  await vfx.remove(job.id);
  await assert.rejects(vfx.job(job.id), (e) => e.status === 404);
});

test("invalid inputs are refused with the field", async () => {
  await assert.rejects(vfx.submit("sleep", { seconds: -1 }), (e) => e.status === 422 && /seconds/.test(e.message));
});

test("preview one frame, and stream frames through a live processor", async () => {
  const stamp = await vfx.upload(await file(process.env.VFX_FACE));
  const target = await vfx.upload(await file(process.env.VFX_IMAGE));
  const shot = await vfx.preview("stamp", { image: stamp.id, target: target.id }, { frame: 0 });
  assert.equal(shot.frames, 1);
  assert.ok(shot.after.startsWith("data:image/jpeg;base64,") && shot.after !== shot.before);

  const frames = [];
  const stream = vfx.stream("stamp", { image: stamp.id, size: 16 }, { onFrame: (jpeg) => frames.push(jpeg) });
  await stream.ready;
  const jpeg = Buffer.from(shot.before.split(",")[1], "base64");
  for (let i = 0; i < 3; i++) {
    assert.ok(stream.send(jpeg));
    await new Promise((r) => setTimeout(r, 150));
  }
  const deadline = Date.now() + 10_000;
  while (frames.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  stream.close();
  assert.ok(frames.length >= 1);
  const head = new Uint8Array(await frames[0].arrayBuffer()).slice(0, 2);
  assert.deepEqual([...head], [0xff, 0xd8]); // a JPEG back
});
