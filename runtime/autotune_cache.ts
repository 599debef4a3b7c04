/**
 * The autotuner's file on disk: one JSON object of tuned tile choices, keyed by the text of
 * their tuning key (runtime/autotune.ts says what the key holds and why). It is a cache: read
 * once per runtime, and anything wrong with it (unreadable, not JSON, another version, a
 * malformed entry) costs one warning line on stderr and a re-tune, never a crash. Writes go to
 * a temporary file renamed over the old one, so a reader never sees half a file; entries
 * another process wrote since this one read are kept (this process's win on the same key).
 *
 * The file lives at `$WEFT_CACHE_DIR/autotune.json`, else `$XDG_CACHE_HOME/weft/autotune.json`,
 * else `~/.cache/weft/autotune.json`.
 * @module
 */
import { z } from "zod";
import type { AttentionShape, Dtype } from "../core/shape.ts";
import type { Expect, SameType } from "../core/same_type.ts";
import { currentHost } from "../core/host.ts";

/**
 * Bump when the meaning of an entry changes: files of another version are ignored. 2: the
 * candidates gained column splits (`64x32x2c4`), so choices made without them are made again.
 * 3: float32 candidates gained 64x64x2 and 128x32x4, which fit once float32 kernels stopped
 * staging the query tile (dense f32 4.5% faster on the H200). 4: band kernels walk edge pairs
 * (compiler/edge_pairs.ts), which changes what their tiles cost.
 */
export const AUTOTUNE_FILE_VERSION = 4;

const CandidateSchema = z.object({
  /** The kernel shape, `tileQ x tileK x rowsPerThread[c columns]` (compiler/tiles.ts `kernelShapeName`). */
  tiles: z.string(),
  /** Median milliseconds of the timed submissions; absent when the candidate failed. */
  ms: z.number().optional(),
  /** Every timed sample; fewer than asked when the candidate was cut off as clearly slower. */
  samples: z.array(z.number()).optional(),
  /** Why the candidate could not run (compile or pipeline error). */
  error: z.string().optional(),
});

const EntrySchema = z.object({
  /** The key's parts, for people and tools reading the file (the entry's name is their text). */
  key: z.object({
    adapter: z.object({
      vendor: z.string(),
      architecture: z.string(),
      deviceId: z.string(),
      description: z.string(),
      webgpu: z.string(),
    }),
    dtype: z.enum(["f32", "f16"]),
    headDim: z.number(),
    group: z.number(),
    gridHeads: z.number(),
    seqLenClass: z.number(),
    kvSeqLenClass: z.number().optional(),
    valueDim: z.number().optional(),
    structure: z.string(),
  }),
  /** The chosen kernel shape (the fastest candidate). */
  tiles: z.string(),
  /** Where the milliseconds came from: timestamp queries or the host's clock. */
  timer: z.enum(["gpu", "wall"]),
  /** The exact shape it was tuned at (one member of the key's size classes). */
  shape: z.object({
    batch: z.number(),
    headsQ: z.number(),
    headsKV: z.number(),
    seqLen: z.number(),
    headDim: z.number(),
    kvSeqLen: z.number().optional(),
    valueDim: z.number().optional(),
  }),
  /** Every candidate tried, in trying order. */
  candidates: z.array(CandidateSchema),
  /** ISO date of the tuning. */
  tunedAt: z.string(),
});

const FileSchema = z.object({
  version: z.number(),
  entries: z.record(z.string(), z.unknown()),
});

// The stored types are written out so that the documentation can show them; the check below
// ties them to the schemas, which stay what a file is read with.

/** One tuned choice as stored. */
export interface AutotuneEntry {
  /** The key's parts, for people and tools reading the file (the entry's name is their text). */
  key: StoredKey;
  /** The chosen kernel shape (the fastest candidate), e.g. "64x32x2". */
  tiles: string;
  /** Where the milliseconds came from: timestamp queries or the host's clock. */
  timer: "gpu" | "wall";
  /** The exact shape it was tuned at (one member of the key's size classes). */
  shape: AttentionShape;
  /** Every candidate tried, in trying order. */
  candidates: CandidateResult[];
  /** ISO date of the tuning. */
  tunedAt: string;
}
/** One candidate's measurement as stored. */
export interface CandidateResult {
  /** The kernel shape, `tileQ x tileK x rowsPerThread[c columns]` (compiler/tiles.ts `kernelShapeName`). */
  tiles: string;
  /** Median milliseconds of the timed submissions; absent when the candidate failed. */
  ms?: number;
  /** Every timed sample; fewer than asked when the candidate was cut off as clearly slower. */
  samples?: number[];
  /** Why the candidate could not run (compile or pipeline error). */
  error?: string;
}
/** The parts of a tuning key as stored (runtime/autotune_key.ts says why each is there). */
export interface StoredKey {
  /** The adapter as WebGPU describes it, and the WebGPU implementation (`deno <version>`). */
  adapter: {
    vendor: string;
    architecture: string;
    deviceId: string;
    description: string;
    webgpu: string;
  };
  /** Element type of the problem. */
  dtype: Dtype;
  /** D */
  headDim: number;
  /** Hq / Hkv: query heads per key/value head. */
  group: number;
  /** B·Hq rounded up to a power of two. */
  gridHeads: number;
  /** N (the query rows) rounded up to a power of two. */
  seqLenClass: number;
  /** Nk rounded up to a power of two, where the keys are more than the queries. */
  kvSeqLenClass?: number;
  /** Dv, where V has a head dim of its own. */
  valueDim?: number;
  /** The pattern's tree of kinds without its numbers, e.g. `union(ring,stride)`. */
  structure: string;
}

type _StoredTypesMatchSchemas = [
  Expect<SameType<AutotuneEntry, z.infer<typeof EntrySchema>>>,
  Expect<SameType<CandidateResult, z.infer<typeof CandidateSchema>>>,
];

/**
 * Where the autotune file lives: `$WEFT_CACHE_DIR/autotune.json`, else
 * `$XDG_CACHE_HOME/weft/autotune.json`, else `$HOME/.cache/weft/autotune.json` (empty variables
 * count as unset, as the XDG spec asks).
 * @param env reads an environment variable (default: the host's, core/host.ts; no permission,
 *   or a browser, reads as unset)
 * @returns the path, or undefined when none of the variables is set (tuning then stays in memory)
 * @example
 * ```ts
 * import { autotuneCachePath } from "./autotune_cache.ts";
 * autotuneCachePath((name) => ({ HOME: "/home/ada" })[name]); // "/home/ada/.cache/weft/autotune.json"
 * ```
 */
export function autotuneCachePath(
  env: (name: string) => string | undefined = readEnv,
): string | undefined {
  const get = (name: string) => env(name) || undefined;
  const weft = get("WEFT_CACHE_DIR");
  if (weft) return `${weft.replace(/\/+$/, "")}/autotune.json`;
  const xdg = get("XDG_CACHE_HOME");
  if (xdg) return `${xdg.replace(/\/+$/, "")}/weft/autotune.json`;
  const home = get("HOME") ?? get("USERPROFILE");
  return home ? `${home.replace(/[/\\]+$/, "")}/.cache/weft/autotune.json` : undefined;
}

function readEnv(name: string): string | undefined {
  return currentHost().env(name); // no --allow-env, or a browser: unset
}

/**
 * Reads the autotune file. A missing file is an empty cache; an unreadable or malformed one is
 * too, after one line on stderr naming the file and what is wrong.
 * @param path the file
 * @param warn where the warning goes (default `console.error`)
 * @returns the entries by key text
 * @example
 * ```ts
 * import { readAutotuneFile } from "./autotune_cache.ts";
 * readAutotuneFile("/nonexistent/autotune.json").size; // 0
 * ```
 */
export function readAutotuneFile(
  path: string,
  warn: (line: string) => void = console.error,
): Map<string, AutotuneEntry> {
  const entries = new Map<string, AutotuneEntry>();
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) warn(ignoring(path, (e as Error).message));
    return entries;
  }
  const problem = parseInto(text, entries);
  if (problem) warn(ignoring(path, problem));
  return entries;
}

/** Parses file text into `entries`; returns what was wrong, if anything. */
function parseInto(text: string, entries: Map<string, AutotuneEntry>): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return `not JSON (${(e as Error).message})`;
  }
  const file = FileSchema.safeParse(json);
  if (!file.success) return `expected {"version", "entries"}`;
  if (file.data.version !== AUTOTUNE_FILE_VERSION) {
    return `version ${file.data.version}, this Weft reads ${AUTOTUNE_FILE_VERSION}`;
  }
  let bad = 0;
  for (const [id, value] of Object.entries(file.data.entries)) {
    const entry = EntrySchema.safeParse(value);
    if (entry.success) entries.set(id, entry.data);
    else bad++;
  }
  return bad ? `${bad} malformed entr${bad === 1 ? "y" : "ies"} skipped` : undefined;
}

function ignoring(path: string, why: string): string {
  return `weft: ignoring autotune cache ${path}: ${why.split("\n")[0]}`;
}

/**
 * Writes entries to the autotune file atomically (a temporary file in the same folder, then a
 * rename), creating the folder. Entries the file gained since it was read are kept unless
 * `entries` has the same key. A failure (read-only disk, no permission) is one warning line:
 * the choices still hold in memory for this runtime.
 * @param path the file
 * @param entries the entries to store, by key text
 * @param warn where a warning goes (default `console.error`)
 * @returns true when the file was written
 * @example
 * ```ts ignore
 * import { readAutotuneFile, writeAutotuneFile } from "./autotune_cache.ts";
 * const path = (await Deno.makeTempDir()) + "/autotune.json";
 * await writeAutotuneFile(path, readAutotuneFile(path));
 * ```
 */
export async function writeAutotuneFile(
  path: string,
  entries: ReadonlyMap<string, AutotuneEntry>,
  warn: (line: string) => void = console.error,
): Promise<boolean> {
  const merged = new Map<string, AutotuneEntry>();
  try {
    parseInto(await Deno.readTextFile(path), merged); // best effort: a bad file is replaced
  } catch { /* missing or unreadable: nothing to keep */ }
  for (const [id, entry] of entries) merged.set(id, entry);
  const text = JSON.stringify(
    { version: AUTOTUNE_FILE_VERSION, entries: Object.fromEntries(merged) },
    null,
    2,
  ) + "\n";
  const dir = path.replace(/[/\\][^/\\]*$/, "") || ".";
  const temp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(temp, text);
    await Deno.rename(temp, path);
    return true;
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    warn(`weft: cannot write autotune cache ${path}: ${(e as Error).message.split("\n")[0]}`);
    return false;
  }
}
