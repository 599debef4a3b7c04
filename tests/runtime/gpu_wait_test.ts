import assert from "node:assert/strict";
import { DeviceError } from "../../core/errors.ts";
import { GPU_WAIT_LIMIT_S, gpuWait, gpuWaitLimit, guardWaits } from "../../runtime/gpu_wait.ts";

// Stand-ins: gpuWait only uses a device as a key.
const dawnLike = {} as GPUDevice;
guardWaits(dawnLike);
const plain = {} as GPUDevice;

Deno.test("a guarded wait returns the promise's value", async () => {
  assert.equal(await gpuWait(dawnLike, "a read-back", Promise.resolve(7), 5), 7);
});

Deno.test("a guarded wait that never settles ends with a DeviceError naming it", async () => {
  const started = performance.now();
  await assert.rejects(
    gpuWait(dawnLike, "a timing read-back", new Promise<never>(() => {}), 0.05),
    (e: unknown) =>
      e instanceof DeviceError &&
      /a timing read-back did not finish within 0.05 s/.test(e.message) &&
      /WEFT_GPU_WAIT_S/.test(e.message),
  );
  assert.ok(performance.now() - started < 2000);
});

Deno.test("a guarded wait passes the promise's own rejection through", async () => {
  await assert.rejects(
    gpuWait(dawnLike, "a read-back", Promise.reject(new Error("mapping failed")), 5),
    /mapping failed/,
  );
});

Deno.test("an unguarded device's wait is plain: no limit applies", async () => {
  const late = new Promise((resolve) => setTimeout(() => resolve("done"), 80));
  assert.equal(await gpuWait(plain, "the queue", late, 0.01), "done");
});

Deno.test("WEFT_GPU_WAIT_S sets the limit and is checked", () => {
  const before = Deno.env.get("WEFT_GPU_WAIT_S");
  try {
    Deno.env.delete("WEFT_GPU_WAIT_S");
    assert.equal(gpuWaitLimit(), GPU_WAIT_LIMIT_S);
    Deno.env.set("WEFT_GPU_WAIT_S", "12.5");
    assert.equal(gpuWaitLimit(), 12.5);
    for (const bad of ["0", "-3", "soon"]) {
      Deno.env.set("WEFT_GPU_WAIT_S", bad);
      assert.throws(() => gpuWaitLimit(), /WEFT_GPU_WAIT_S must be a positive number/);
    }
  } finally {
    if (before === undefined) Deno.env.delete("WEFT_GPU_WAIT_S");
    else Deno.env.set("WEFT_GPU_WAIT_S", before);
  }
});

Deno.test("a slow guarded wait says so, and says how long it took when it ends", async () => {
  const lines: string[] = [];
  const notice = { afterS: 0.02, say: (line: string) => lines.push(line) };
  const late = new Promise((resolve) => setTimeout(() => resolve("built"), 120));
  assert.equal(await gpuWait(dawnLike, "building the pipeline of ring", late, 5, notice), "built");
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(lines[0], /building the pipeline of ring is still waiting after 0.02 s/);
  assert.match(lines[0], /fails after 5 s, WEFT_GPU_WAIT_S/);
  assert.match(lines[1], /^weft: building the pipeline of ring ended after \d+\.\d s$/);
  // A quick wait says nothing.
  await gpuWait(dawnLike, "a read-back", Promise.resolve(1), 5, notice);
  assert.equal(lines.length, 2);
});
