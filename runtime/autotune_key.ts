/**
 * The autotuner's key: what a tuned kernel shape is stored under (runtime/autotune.ts). Each
 * part is there because it changes which shape is fastest:
 * - adapter: vendor, architecture, device id, description and the WebGPU implementation
 *   (Deno's version, which fixes the WGSL-to-driver compiler): a different GPU or toolchain
 *   has other caches, occupancy and codegen. Deno does not expose a driver version; the
 *   description carries it where the backend puts it there (Mesa's LLVM version, say).
 * - dtype: float16 halves the staged tiles, so bigger tiles fit and the balance shifts.
 * - D (head dim): the tiles' bytes and the registers per row grow with it.
 * - Hq / Hkv (the query heads per key/value head): how many workgroups re-read the same K and V.
 * - B·Hq and N, each rounded up to a power of two: the grid is `B·Hq x N/tileQ` workgroups, so
 *   at small sizes big tiles leave the GPU idle; and N against the pattern's own numbers sets
 *   how much of a band or stride tile is wasted. Classes rather than exact sizes, so one tuning
 *   serves the sizes around it. Queries against more keys add the class of Nk (each query tile
 *   walks Nk's key tiles), and a value head dim of its own adds Dv (the V tile and the output
 *   registers grow with it); a square call's key has neither.
 * - the pattern's structure, its tree of kinds without numbers (`union(ring,stride)`): the
 *   kinds decide the plan's components, layouts and partial-tile work. Numbers (radius,
 *   period) are left out so one tuning serves a family; the size class of N stands in for
 *   their ratio to N.
 * @module
 */
import { type AttentionShape, checkAttentionShape, type Dtype } from "../compiler/mod.ts";
import { sequenceSizes } from "../core/shape.ts";
import type { StoredKey } from "./autotune_cache.ts";
import type { DeviceInfo } from "./device.ts";

/** What a tuning is stored under (the module comment says why each part is there). */
export type TuneKey = StoredKey;

/**
 * The tuning key of a problem on a device.
 * @param info the device (runtime/device.ts)
 * @param pattern the pattern (JSON form, not checked)
 * @param shape the attention shape
 * @param dtype element type
 * @returns the key's parts and their text, or undefined for input `compile` would refuse
 * @example
 * ```ts
 * import { tuneKey } from "./autotune_key.ts";
 * const info = {
 *   description: "NVIDIA H100 80GB HBM3", vendor: "nvidia", architecture: "hopper", deviceId: "8960",
 *   isFallback: false, features: [], timestamps: true, shaderF16: true,
 *   backend: "native" as const, webgpu: "deno 2.9.6", matrices: [],
 * };
 * tuneKey(info, { kind: "union", of: [{ kind: "ring", radius: 8 }, { kind: "causal" }] },
 *   { batch: 1, headsQ: 8, headsKV: 2, seqLen: 3000, headDim: 64 }, "f32")?.id;
 * // "NVIDIA H100 80GB HBM3 [vendor nvidia, arch hopper, device 8960, deno 2.9.6] |
 * //   f32 D=64 Hq/Hkv=4 B*Hq<=8 N<=4096 | union(ring,causal)"
 * ```
 */
export function tuneKey(
  info: DeviceInfo,
  pattern: unknown,
  shape: AttentionShape,
  dtype: Dtype,
): { id: string; key: TuneKey } | undefined {
  const structure = patternStructure(pattern);
  if (structure === undefined) return undefined;
  try {
    checkAttentionShape(shape);
  } catch {
    return undefined;
  }
  const key: TuneKey = {
    adapter: {
      vendor: info.vendor,
      architecture: info.architecture,
      deviceId: info.deviceId,
      description: info.description,
      webgpu: info.webgpu,
    },
    dtype,
    headDim: shape.headDim,
    group: shape.headsQ / shape.headsKV,
    gridHeads: powerOfTwoAtLeast(shape.batch * shape.headsQ),
    seqLenClass: powerOfTwoAtLeast(shape.seqLen),
    structure,
  };
  const { nq, nk, d, dv } = sequenceSizes(shape);
  if (nk !== nq) key.kvSeqLenClass = powerOfTwoAtLeast(nk);
  if (dv !== d) key.valueDim = dv;
  return { id: keyText(key), key };
}

/**
 * A pattern's tree of kinds without its numbers: `ring`, `union(ring,stride)`,
 * `gated(window,intersect(random,causal))`. Children keep their order (it decides which
 * component excludes which).
 * @param pattern a pattern in JSON form (not checked)
 * @returns the structure, or undefined when the value is not shaped like a pattern
 * @example
 * ```ts
 * import { patternStructure } from "./autotune_key.ts";
 * patternStructure({ kind: "gated", branches: [{ kind: "ring", radius: 128 }, { kind: "stride", period: 16 }] });
 * // "gated(ring,stride)"
 * ```
 */
export function patternStructure(pattern: unknown): string | undefined {
  if (typeof pattern !== "object" || pattern === null) return undefined;
  const p = pattern as { kind?: unknown; of?: unknown; branches?: unknown };
  if (typeof p.kind !== "string") return undefined;
  const children = p.kind === "union" || p.kind === "intersect"
    ? p.of
    : p.kind === "gated"
    ? p.branches
    : undefined;
  if (children === undefined) return p.kind;
  if (!Array.isArray(children)) return undefined;
  const inner = children.map(patternStructure);
  return inner.includes(undefined) ? undefined : `${p.kind}(${inner.join(",")})`;
}

/**
 * The key's text: the entry's name in the cache file, readable on its own.
 * @param key the key's parts
 * @returns e.g. "llvmpipe (LLVM 15.0.6, 256 bits) [vendor 65541, arch -, device 0, deno 2.9.6] |
 *   f32 D=16 Hq/Hkv=1 B*Hq<=2 N<=64 | union(ring,stride)"
 * @example
 * ```ts
 * import { keyText } from "./autotune_key.ts";
 * keyText({
 *   adapter: { vendor: "nvidia", architecture: "hopper", deviceId: "8960", description: "H100", webgpu: "deno 2.9.6" },
 *   dtype: "f16", headDim: 64, group: 1, gridHeads: 8, seqLenClass: 16384, structure: "dense",
 * }); // "H100 [vendor nvidia, arch hopper, device 8960, deno 2.9.6] | f16 D=64 Hq/Hkv=1 B*Hq<=8 N<=16384 | dense"
 * ```
 */
export function keyText(key: TuneKey): string {
  const a = key.adapter;
  return `${a.description} [vendor ${a.vendor || "-"}, arch ${a.architecture || "-"}, ` +
    `device ${a.deviceId || "-"}, ${a.webgpu}] | ${key.dtype} D=${key.headDim}` +
    `${key.valueDim === undefined ? "" : ` Dv=${key.valueDim}`} ` +
    `Hq/Hkv=${key.group} B*Hq<=${key.gridHeads} N<=${key.seqLenClass}` +
    `${key.kvSeqLenClass === undefined ? "" : ` Nk<=${key.kvSeqLenClass}`} | ${key.structure}`;
}

/**
 * The smallest power of two >= x: the size class of N and of B·Hq.
 * @param x a positive integer
 * @returns 2^ceil(log2 x)
 * @example
 * ```ts
 * import { powerOfTwoAtLeast } from "./autotune_key.ts";
 * powerOfTwoAtLeast(3000); // 4096
 * ```
 */
export function powerOfTwoAtLeast(x: number): number {
  let p = 1;
  while (p < x) p *= 2;
  return p;
}
