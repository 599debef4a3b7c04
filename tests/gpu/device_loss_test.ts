/**
 * A lost device (simulated with `device.destroy()`, as a driver reset would do it): a call
 * prepared before the loss fails with a DeviceLostError that says what happened, and the
 * runtime opens a new device and runs the next call (and a call in flight) correctly.
 */
import assert from "node:assert/strict";
import { DeviceLostError } from "../../core/errors.ts";
import { reference } from "../../runtime/reference/mod.ts";
import { createRuntime } from "../../runtime/runtime.ts";
import { normalTensor } from "../../runtime/seeded_random.ts";

const shape = { batch: 1, headsQ: 2, headsKV: 1, seqLen: 40, headDim: 8 };
const pattern = { kind: "union", of: [{ kind: "ring", radius: 3 }, { kind: "stride", period: 7 }] };
const q = normalTensor(2 * 40 * 8, 1), k = normalTensor(40 * 8, 2), v = normalTensor(40 * 8, 3);
const expected = reference({ pattern: pattern as never, shape, q, k, v });

function maxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("a lost device: the old call fails clearly, the runtime recovers and runs again", async () => {
  const rt = await createRuntime({ autotune: false });
  try {
    const compiled = rt.compile(pattern, { shape });
    const before = await rt.run(compiled, { q, k, v });
    assert.ok(maxError(before.o, expected.o) <= 1e-4);

    const stale = await rt.prepare(compiled, { q, k, v });
    const lostDevice = rt.device;
    lostDevice.destroy();
    await assert.rejects(
      () => stale.submit(),
      (e: Error) =>
        e instanceof DeviceLostError && /GPU device was lost \(destroyed/.test(e.message) &&
        /Prepare it again/.test(e.message),
    );

    // The next run opens a new device by itself and gives the same answer.
    const after = await rt.run(compiled, { q, k, v });
    assert.notEqual(rt.device, lostDevice);
    assert.equal(rt.devicesLost, 1);
    assert.ok(maxError(after.o, expected.o) <= 1e-4);
    assert.ok(maxError(after.lse, expected.lse) <= 1e-4);

    // Lost while a run is in flight: that run fails once inside, then runs on a new device.
    const inFlight = rt.run(compiled, { q, k, v });
    rt.device.destroy();
    const recovered = await inFlight;
    assert.equal(rt.devicesLost, 2);
    assert.ok(maxError(recovered.o, expected.o) <= 1e-4);
  } finally {
    rt.destroy();
  }
});
