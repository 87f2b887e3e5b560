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

const until = async (check, what, ms = 15_000) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test("a stream keeps its window of frames in flight, and dropped frames free it again", async () => {
  const stamp = await vfx.upload(await file(process.env.VFX_FACE));
  const target = await vfx.upload(await file(process.env.VFX_IMAGE));
  const shot = await vfx.preview("stamp", { image: stamp.id, target: target.id });
  const jpeg = Buffer.from(shot.before.split(",")[1], "base64");
  let frames = 0, stats = null;
  // A window of 4 lets a burst outrun the server: it processes one frame, keeps the newest
  // waiting one and drops those between, which are never answered.
  const stream = vfx.stream("stamp", { image: stamp.id, size: 16 }, {
    onFrame: () => { frames += 1; }, onStats: (s) => { stats = s; }, window: 4,
  });
  let sent = 0;
  try {
    await stream.ready;
    for (let burst = 0; burst < 3; burst++) {
      while (stream.send(jpeg)) sent += 1; // back to back, until the window is full
      assert.equal(stream.inFlight(), 4);
      assert.equal(stream.send(jpeg), false);
      // Answered or reported dropped (the stats, about once a second): the window opens again.
      await until(() => stream.inFlight() === 0, `the window to empty (burst ${burst})`);
    }
  } finally {
    stream.close();
  }
  assert.equal(sent, 12);
  assert.ok(frames >= 3, `${frames} frames back`); // at least the first of each burst
  assert.ok(stats.dropped > 0, `the bursts outran the server: ${JSON.stringify(stats)}`);
  assert.equal(frames + stats.dropped, sent);

  // The default window: one frame processed, one waiting, the next sent on each answer. The
  // server takes up the waiting frame before it answers, so a frame is dropped only when
  // two arrive together (a loaded server, a frame still in transit), and a dropped frame
  // never holds the window shut: the stats report it.
  let steadyStats = null;
  const steady = vfx.stream("stamp", { image: stamp.id, size: 16 }, {
    onFrame: () => { frames += 1; }, onStats: (s) => { steadyStats = s; },
  });
  try {
    await steady.ready;
    frames = 0;
    let accepted = 0;
    while (steady.send(jpeg)) accepted += 1;
    assert.equal(accepted, 2);
    for (let i = 0; i < 30; i++) {
      await until(() => steady.canSend(), `room in the window (frame ${i})`);
      assert.ok(steady.send(jpeg));
    }
    await until(() => steady.inFlight() === 0, "every frame answered or reported dropped");
    await until(() => steadyStats !== null && steadyStats.frames === frames, "the stats");
    assert.equal(frames + steadyStats.dropped, 32);
    assert.ok(frames >= 16, JSON.stringify(steadyStats)); // drops are the exception
  } finally {
    steady.close();
  }
});
