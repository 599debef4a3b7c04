import assert from "node:assert/strict";
import { join } from "node:path";
import { type NpyArray, readNpy, readNpyFile, writeNpy, writeNpyFile } from "../../cli/npy.ts";

function hex(...parts: string[]): Uint8Array {
  const text = parts.join("");
  return Uint8Array.from(
    { length: text.length / 2 },
    (_, i) => parseInt(text.slice(2 * i, 2 * i + 2), 16),
  );
}

/** Files written by NumPy 2.4.6 (`np.save` unless noted), as hex. */
const NUMPY_FILES = {
  // np.array([[1.5, -2, 3], [0, inf, -inf]], '<f4')
  f4_2x3: hex(
    "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a20",
    "46616c73652c20277368617065273a2028322c2033292c207d20202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a0000c03f",
    "000000c000004040000000000000807f000080ff",
  ),
  // np.array([pi, -1e300, 5e-324], '<f8')
  f8_3: hex(
    "934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a20",
    "46616c73652c20277368617065273a2028332c292c207d202020202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a182d4454",
    "fb2109409c7500883ce437fe0100000000000000",
  ),
  // np.array([[1, -0.5], [65504, 6e-8]], '<f2')
  f2_2x2: hex(
    "934e554d5059010076007b276465736372273a20273c6632272c2027666f727472616e5f6f72646572273a20",
    "46616c73652c20277368617065273a2028322c2032292c207d20202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a003c00b8",
    "ff7b0100",
  ),
  // np.array(-7, '<i4')
  i4_scalar: hex(
    "934e554d5059010076007b276465736372273a20273c6934272c2027666f727472616e5f6f72646572273a20",
    "46616c73652c20277368617065273a2028292c207d2020202020202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200af9ffffff",
  ),
  // np.array([[0], [4294967295]], '<u4')
  u4_2x1: hex(
    "934e554d5059010076007b276465736372273a20273c7534272c2027666f727472616e5f6f72646572273a20",
    "46616c73652c20277368617065273a2028322c2031292c207d20202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a00000000",
    "ffffffff",
  ),
  // np.zeros((0,), '<f4')
  f4_empty: hex(
    "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a20",
    "46616c73652c20277368617065273a2028302c292c207d202020202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a",
  ),
  // write_array(f, np.array([1, 2], '<i4'), version=(2, 0))
  i4_v2: hex(
    "934e554d50590200740000007b276465736372273a20273c6934272c2027666f727472616e5f6f7264657227",
    "3a2046616c73652c20277368617065273a2028322c292c207d20202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a01000000",
    "02000000",
  ),
  // write_array(f, np.array([1, 2], '<i4'), version=(3, 0))
  i4_v3: hex(
    "934e554d50590300740000007b276465736372273a20273c6934272c2027666f727472616e5f6f7264657227",
    "3a2046616c73652c20277368617065273a2028322c292c207d20202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a01000000",
    "02000000",
  ),
  // np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3))
  fortran: hex(
    "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a20",
    "547275652c20277368617065273a2028322c2033292c207d2020202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a00000000",
    "000040400000803f00008040000000400000a040",
  ),
  // np.array([1, 2], '>f4')
  big_endian: hex(
    "934e554d5059010076007b276465736372273a20273e6634272c2027666f727472616e5f6f72646572273a20",
    "46616c73652c20277368617065273a2028322c292c207d202020202020202020202020202020202020202020",
    "2020202020202020202020202020202020202020202020202020202020202020202020202020200a3f800000",
    "40000000",
  ),
};

/** What each NumPy file holds; also what `writeNpy` must turn into the same bytes. */
const EXPECTED: Record<string, NpyArray> = {
  f4_2x3: {
    dtype: "f4",
    shape: [2, 3],
    data: new Float32Array([1.5, -2, 3, 0, Infinity, -Infinity]),
  },
  f8_3: { dtype: "f8", shape: [3], data: new Float64Array([Math.PI, -1e300, 5e-324]) },
  // 6e-8 rounds to the smallest float16 subnormal, 2^-24.
  f2_2x2: { dtype: "f2", shape: [2, 2], data: new Float16Array([1, -0.5, 65504, 2 ** -24]) },
  i4_scalar: { dtype: "i4", shape: [], data: new Int32Array([-7]) },
  u4_2x1: { dtype: "u4", shape: [2, 1], data: new Uint32Array([0, 4294967295]) },
  f4_empty: { dtype: "f4", shape: [0], data: new Float32Array(0) },
  i4_v2: { dtype: "i4", shape: [2], data: new Int32Array([1, 2]) },
  i4_v3: { dtype: "i4", shape: [2], data: new Int32Array([1, 2]) },
};

Deno.test("readNpy reads what NumPy wrote: every dtype, scalar, empty, format 2.0 and 3.0", () => {
  for (const [name, expected] of Object.entries(EXPECTED)) {
    const bytes = NUMPY_FILES[name as keyof typeof NUMPY_FILES];
    assert.deepEqual(readNpy(bytes), expected, name);
  }
});

Deno.test("writeNpy writes the same bytes as np.save (format 1.0)", () => {
  for (const [name, array] of Object.entries(EXPECTED)) {
    if (name.endsWith("_v2") || name.endsWith("_v3")) continue;
    assert.deepEqual(writeNpy(array), NUMPY_FILES[name as keyof typeof NUMPY_FILES], name);
  }
});

Deno.test("round trip keeps dtype, shape and every bit (NaN, -0, -Infinity)", () => {
  const arrays: NpyArray[] = [
    { dtype: "f4", shape: [2, 3, 4], data: Float32Array.from({ length: 24 }, (_, i) => i / 7 - 1) },
    { dtype: "f4", shape: [4], data: new Float32Array([NaN, -0, -Infinity, 3.4e38]) },
    {
      dtype: "f8",
      shape: [1, 1, 1, 2],
      data: new Float64Array([Number.MIN_VALUE, -Number.MAX_VALUE]),
    },
    { dtype: "f2", shape: [3], data: new Float16Array([0.1, -2, Infinity]) },
    { dtype: "i4", shape: [2, 2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -1]) },
    { dtype: "u4", shape: [], data: new Uint32Array([0xdeadbeef]) },
    { dtype: "f4", shape: [3, 0, 2], data: new Float32Array(0) },
  ];
  for (const a of arrays) {
    const bytes = writeNpy(a);
    assert.equal((bytes.length - a.data.byteLength) % 64, 0, "data starts 64-byte aligned");
    const back = readNpy(bytes);
    assert.deepEqual(back, a);
    assert.deepEqual(
      new Uint8Array(back.data.buffer, back.data.byteOffset, back.data.byteLength),
      new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength),
    );
  }
});

Deno.test("readNpy copes with bytes at an odd offset inside a bigger buffer", () => {
  const file = writeNpy({ dtype: "f8", shape: [2], data: new Float64Array([1, 2]) });
  const padded = new Uint8Array(file.length + 3);
  padded.set(file, 3);
  assert.deepEqual(readNpy(padded.subarray(3)).data, new Float64Array([1, 2]));
});

Deno.test("readNpy refuses what it cannot read with one line naming the header field", () => {
  const refusals: [Uint8Array, RegExp][] = [
    [NUMPY_FILES.fortran, /^npy fortran_order: True is not supported/],
    [NUMPY_FILES.big_endian, /^npy descr: '>f4' is big-endian; save with dtype '<f4'/],
    [new TextEncoder().encode("not a numpy file at all"), /^npy magic:/],
    [
      NUMPY_FILES.i4_scalar.subarray(0, NUMPY_FILES.i4_scalar.length - 1),
      /^npy data: .*needs 4 bytes/,
    ],
    [withHeader("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }"), /^npy descr: '<c8'/],
    [withHeader("{'fortran_order': False, 'shape': (1,), }"), /^npy header: no 'descr'/],
  ];
  for (const [bytes, message] of refusals) {
    assert.throws(
      () => readNpy(bytes),
      (e) => e instanceof Error && message.test(e.message) && !e.message.includes("\n"),
    );
  }
});

Deno.test("writeNpy refuses data that disagrees with dtype or shape", () => {
  assert.throws(
    () => writeNpy({ dtype: "f4", shape: [2], data: new Float64Array(2) }),
    /npy dtype: dtype "f4" needs a Float32Array, got Float64Array/,
  );
  assert.throws(
    () => writeNpy({ dtype: "f4", shape: [2, 2], data: new Float32Array(3) }),
    /npy shape: shape \[2, 2\] has 4 elements, data has 3/,
  );
});

Deno.test("readNpyFile and writeNpyFile round trip through disk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "a.npy");
    const a: NpyArray = { dtype: "f4", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) };
    await writeNpyFile(path, a);
    assert.deepEqual(await readNpyFile(path), a);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const hasNumpy = await (async () => {
  try {
    const { success } = await new Deno.Command("python3", {
      args: ["-c", "import numpy"],
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "NumPy reads our files and we read its own (live, when python3 has numpy)",
  ignore: !hasNumpy,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const ours = join(dir, "ours.npy"), theirs = join(dir, "theirs.npy");
      await writeNpyFile(ours, {
        dtype: "f4",
        shape: [2, 3],
        data: new Float32Array([1, 2, 3, 4, 5, -Infinity]),
      });
      const script = [
        "import numpy as np, sys",
        "a = np.load(sys.argv[1])",
        "assert a.dtype == np.float32 and a.shape == (2, 3), (a.dtype, a.shape)",
        "assert a[1, 2] == -np.inf and a.sum() == -np.inf and a[0].tolist() == [1, 2, 3]",
        "np.save(sys.argv[2], np.arange(12, dtype='<f8').reshape(3, 4) / 4)",
      ].join("\n");
      const run = await new Deno.Command("python3", { args: ["-c", script, ours, theirs] })
        .output();
      assert.ok(run.success, new TextDecoder().decode(run.stderr));
      const back = await readNpyFile(theirs);
      assert.deepEqual(back, {
        dtype: "f8",
        shape: [3, 4],
        data: Float64Array.from({ length: 12 }, (_, i) => i / 4),
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A format 1.0 file with the given header text and 4 zero data bytes. */
function withHeader(text: string): Uint8Array {
  const header = new TextEncoder().encode(text.padEnd(117) + "\n");
  const out = new Uint8Array(10 + header.length + 4);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(header, 10);
  return out;
}
