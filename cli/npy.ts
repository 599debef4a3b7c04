/**
 * NumPy `.npy` reading and writing, so golden files and CLI inputs open in NumPy and PyTorch
 * unchanged (DESIGN §4). Little-endian, C order; writes format 1.0, reads 1.0, 2.0 and 3.0.
 * @module
 */

/** The dtypes Weft reads and writes, by their NumPy `descr` without the byte-order mark. */
export type NpyDtype = "f4" | "f8" | "f2" | "i4" | "u4";

/** An n-dimensional array: `data` holds the elements in C (row-major) order. */
export interface NpyArray {
  /** Element type; must match the class of `data`. */
  dtype: NpyDtype;
  /** Dimensions, outermost first; `[]` is a scalar (one element). */
  shape: number[];
  /** `product(shape)` elements, row-major. */
  data: Float32Array | Float64Array | Float16Array | Int32Array | Uint32Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

const ITEM_SIZE: Record<NpyDtype, number> = { f2: 2, f4: 4, f8: 8, i4: 4, u4: 4 };

/** Typed arrays use the host's byte order; NPY files here are little-endian. */
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Parses the bytes of a `.npy` file.
 *
 * @param bytes the whole file
 * @returns the array (its data is a copy, aligned for its dtype)
 * @throws {Error} one line naming the header field when the file is not a little-endian,
 *   C-order array of a supported dtype
 * @example
 * ```ts
 * import { readNpy, writeNpy } from "./npy.ts";
 * const a = readNpy(writeNpy({ dtype: "f4", shape: [2], data: new Float32Array([1, 2]) }));
 * console.log(a.shape); // [2]
 * ```
 */
export function readNpy(bytes: Uint8Array): NpyArray {
  requireLittleEndianHost();
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new Error("npy magic: not a .npy file (expected the bytes \\x93NUMPY at the start)");
  }
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Version 1.0 stores the header length in 2 bytes; 2.0 and 3.0 (UTF-8 header) in 4.
  let headerStart: number, headerLength: number;
  if (major === 1) {
    headerStart = 10;
    headerLength = view.getUint16(8, true);
  } else if (major === 2 || major === 3) {
    headerStart = 12;
    headerLength = view.getUint32(8, true);
  } else {
    throw new Error(
      `npy version: unsupported format version ${major}.${bytes[7]}; expected 1.0-3.0`,
    );
  }
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) {
    throw new Error(`npy header: header length ${headerLength} runs past the end of the file`);
  }
  const header = new TextDecoder().decode(bytes.subarray(headerStart, dataStart));
  const { dtype, shape } = parseHeader(header);

  const count = shape.reduce((a, b) => a * b, 1);
  const byteCount = count * ITEM_SIZE[dtype];
  if (bytes.length - dataStart !== byteCount) {
    throw new Error(
      `npy data: shape (${shape.join(", ")}) of ${dtype} needs ${byteCount} bytes, ` +
        `the file holds ${bytes.length - dataStart}`,
    );
  }
  // slice() copies into a fresh buffer, so the typed array is aligned whatever the header size.
  const buffer = bytes.slice(dataStart, dataStart + byteCount).buffer;
  return { dtype, shape, data: makeTypedArray(dtype, buffer) };
}

/**
 * Serialises an array as a `.npy` file (format 1.0, little-endian, C order).
 *
 * @param a the array; `data.length` must equal `product(shape)` and its class match `dtype`
 * @returns the file's bytes
 * @throws {Error} when `data` disagrees with `dtype` or `shape`
 * @example
 * ```ts
 * import { writeNpy } from "./npy.ts";
 * const bytes = writeNpy({ dtype: "i4", shape: [2, 2], data: new Int32Array([1, 2, 3, 4]) });
 * console.log(bytes.length % 64); // 16: a 64-byte aligned header then 16 bytes of data
 * ```
 */
export function writeNpy(a: NpyArray): Uint8Array {
  requireLittleEndianHost();
  const expectedClass = makeTypedArray(a.dtype, new ArrayBuffer(0)).constructor;
  if (a.data.constructor !== expectedClass) {
    throw new Error(
      `npy dtype: dtype "${a.dtype}" needs a ${expectedClass.name}, got ${a.data.constructor.name}`,
    );
  }
  if (!a.shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`npy shape: dimensions must be integers >= 0, got [${a.shape.join(", ")}]`);
  }
  const count = a.shape.reduce((x, y) => x * y, 1);
  if (a.data.length !== count) {
    throw new Error(
      `npy shape: shape [${a.shape.join(", ")}] has ${count} elements, data has ${a.data.length}`,
    );
  }
  // A 1-tuple needs its trailing comma in Python: (5,)
  const shapeText = a.shape.length === 1 ? `(${a.shape[0]},)` : `(${a.shape.join(", ")})`;
  let header = `{'descr': '<${a.dtype}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // NumPy pads so the data starts on a 64-byte boundary, ending the header with "\n".
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  if (header.length > 0xffff) throw new Error("npy header: shape too long for format 1.0");

  const out = new Uint8Array(10 + header.length + a.data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1; // format 1.0
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength), 10 + header.length);
  return out;
}

/**
 * Reads a `.npy` file from disk.
 *
 * @param path file path
 * @returns the array
 * @example
 * ```ts ignore
 * import { readNpyFile } from "./npy.ts";
 * const q = await readNpyFile("tests/golden/dense.q.npy");
 * ```
 */
export async function readNpyFile(path: string | URL): Promise<NpyArray> {
  const bytes = await Deno.readFile(path);
  try {
    return readNpy(bytes);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/**
 * Writes a `.npy` file to disk.
 *
 * @param path file path
 * @param a the array
 * @returns when the file is written
 * @example
 * ```ts ignore
 * import { writeNpyFile } from "./npy.ts";
 * await writeNpyFile("o.npy", { dtype: "f4", shape: [1], data: new Float32Array([0]) });
 * ```
 */
export async function writeNpyFile(path: string | URL, a: NpyArray): Promise<void> {
  await Deno.writeFile(path, writeNpy(a));
}

/** Reads the three fields NumPy writes: `descr`, `fortran_order`, `shape`. */
function parseHeader(header: string): { dtype: NpyDtype; shape: number[] } {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  if (descr === undefined) throw new Error(`npy header: no 'descr' field in ${header.trim()}`);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  if (fortran === undefined) {
    throw new Error(`npy header: no 'fortran_order' field in ${header.trim()}`);
  }
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (shapeText === undefined) throw new Error(`npy header: no 'shape' field in ${header.trim()}`);

  if (fortran === "True") {
    throw new Error(
      "npy fortran_order: True is not supported; save a C-order array (np.ascontiguousarray)",
    );
  }
  const order = descr[0];
  const dtype = descr.slice(1);
  if (order === ">") {
    throw new Error(`npy descr: '${descr}' is big-endian; save with dtype '<${dtype}'`);
  }
  // '|' is "byte order not applicable" and '=' is native; both read as little-endian here.
  if (!(order === "<" || order === "|" || order === "=") || !(dtype in ITEM_SIZE)) {
    throw new Error(
      `npy descr: '${descr}' is not supported; expected one of <f2, <f4, <f8, <i4, <u4`,
    );
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new Error(`npy shape: expected a tuple of integers >= 0, got (${shapeText})`);
  }
  return { dtype: dtype as NpyDtype, shape };
}

function makeTypedArray(dtype: NpyDtype, buffer: ArrayBuffer): NpyArray["data"] {
  switch (dtype) {
    case "f2":
      return new Float16Array(buffer);
    case "f4":
      return new Float32Array(buffer);
    case "f8":
      return new Float64Array(buffer);
    case "i4":
      return new Int32Array(buffer);
    case "u4":
      return new Uint32Array(buffer);
  }
}

function requireLittleEndianHost(): void {
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new Error("npy: this host is big-endian; Weft's .npy IO assumes a little-endian host");
  }
}
