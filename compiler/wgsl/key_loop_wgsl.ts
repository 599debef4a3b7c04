/**
 * The key loop of an attention kernel: the query tile's runs of key tiles from the schedule (or
 * a bucket range), each key tile's K, V and positions staged in workgroup memory, with the next
 * tile prefetched into registers where it fits.
 * @module
 */
import { assert } from "../../core/errors.ts";
import { codeSetOf } from "../hash_layout.ts";
import { layoutLabel } from "../layout.ts";
import { HEADER_WORDS, RUN_WORDS, SLOT_WORDS } from "../schedule_buffer.ts";
import { TAG_SHIFT } from "../run_fusion.ts";
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import {
  type Call,
  call,
  kernelGeometry,
  type MemberRefs,
  range,
  valueWidth,
} from "./kernel_refs.ts";
import { type Grid, sourceRow } from "./tile_mask_wgsl.ts";
import { stagedCodes } from "../component_reads.ts";
import { tileStore, vIndex } from "./matrix_math_wgsl.ts";
import { kvSource } from "./kv_row_wgsl.ts";

/**
 * Move to the next run when the current one is done (reads only uniform values). Tagged runs
 * also name their member, whose mask the run's PARTIAL tiles use (run_fusion.ts).
 */
function nextRun(indent: string, tagged: boolean): string {
  const length = tagged
    ? [
      `  let runWord = schedule[runsAt + ${RUN_WORDS}u * run + 1u]; // kvLength | member << ${TAG_SHIFT}`,
      `  runEnd = keyTile + (runWord & ${2 ** TAG_SHIFT - 1}u);`,
      `  runMember = MEMBER + select(0u, runWord >> ${TAG_SHIFT}u, FUSED);`,
    ]
    : [`  runEnd = keyTile + schedule[runsAt + ${RUN_WORDS}u * run + 1u];`];
  return [
    `if (keyTile == runEnd && run != lastRun) {`,
    `  let runHead = schedule[runsAt + ${RUN_WORDS}u * run]; // kvStart << 1 | partial`,
    `  keyTile = runHead >> 1u;`,
    `  runPartial = (runHead & 1u) == 1u;`,
    ...length,
    `  run++;`,
    `}`,
  ].map((line) => indent + line).join("\n");
}

/**
 * The barrier before a tile's K and V overwrite the previous tile's. The matrix path needs
 * none here: its P·V ends with one, after the last read of the staged tiles
 * (matrix_math_wgsl.ts).
 */
function previousTileDone(o: { matrix?: unknown }): string {
  return o.matrix
    ? "    // (No barrier: the previous tile's P·V ended with one.)"
    : "    workgroupBarrier();               // every read of the previous tile is done";
}

/** Key tile loop that loads each K/V tile from global memory between two barriers. */
export function tileLoop(
  o: ComponentKernelOptions,
  kPos: Call,
  tagged: boolean,
  grid: Grid,
  keyCodes: Call = call("keyCodes"),
): string {
  // V rows as wide as K's load with them; a value head dim of its own loads in a loop of its own.
  const withK = (line: string) => valueWidth(o) === "D4" ? `\n      ${line}` : "";
  const paged = o.paged !== undefined;
  const load = grid.naturalK
    ? `      let src = ${
      kvSource(paged, `(${sourceRow(grid, "k", kPos, "kTileStart + i / D4")})`, "i % D4")
    };
      ${tileStore(o, "k", "(i / D4) * QK_STRIDE + i % D4", "kIn[src]")}${
      withK(tileStore(o, "v", vIndex(o, "(i / D4)", "i"), "vIn[src]"))
    }`
    : grid.complete || grid.padded
    ? `      let j = i / D4;
      let k = ${kPos("kTileStart + j")};
      if (i % D4 == 0u) { kPosition[j] = k; }
      let src = ${kvSource(paged, grid.complete ? "u32(k)" : "u32(max(k, 0))", "i % D4")};
      ${tileStore(o, "k", "j * QK_STRIDE + i % D4", "kIn[src]")}${
      withK(tileStore(o, "v", vIndex(o, "j", "i"), "vIn[src]"))
    }`
    : `      let j = i / D4;
      let k = ${kPos("kTileStart + j")};
      if (i % D4 == 0u) { kPosition[j] = k;${
      stagedCodes(o.component).length ? ` kCodeTile[j] = ${keyCodes("max(k, 0)")};` : ""
    } }
      let src = ${kvSource(paged, "u32(max(k, 0))", "i % D4")};
      ${
      tileStore(o, "k", "j * QK_STRIDE + i % D4", `select(vec4<${o.dtype}>(0.0), kIn[src], k >= 0)`)
    }${
      withK(
        tileStore(o, "v", vIndex(o, "j", "i"), `select(vec4<${o.dtype}>(0.0), vIn[src], k >= 0)`),
      )
    }`;
  return `  loop {
${nextRun("    ", tagged)}
    if (keyTile == runEnd) { break; }
    let kTileStart = keyTile * TILE_K;
    let isPartial = runPartial;${tagged ? "\n    let tileMember = runMember;" : ""}
    keyTile++;

${previousTileDone(o)}
    for (var i = lid; i < TILE_K * D4; i += THREADS) {
${load}
    }${valueWidth(o) === "DV4" ? "\n" + valueTileLoads(o, kPos, grid) : ""}
    workgroupBarrier();
`;
}

/**
 * V's tile where its rows are not as wide as K's (`DV4` vec4s from `vBase`): a loop of its own
 * over the same keys, their positions computed again (the K loop's `kPosition` is read only
 * after the barrier).
 */
function valueTileLoads(o: ComponentKernelOptions, kPos: Call, grid: Grid): string {
  const paged = o.paged !== undefined;
  const load = grid.naturalK
    ? [`let src = ${
      kvSource(
        paged,
        `(${sourceRow(grid, "k", kPos, "kTileStart + i / DV4")})`,
        "i % DV4",
        "DV4",
      )
    };`]
    : [
      `let k = ${kPos("kTileStart + i / DV4")};`,
      `let src = ${
        kvSource(paged, grid.complete ? "u32(k)" : "u32(max(k, 0))", "i % DV4", "DV4")
      };`,
    ];
  const value = grid.naturalK || grid.complete || grid.padded
    ? "vIn[src]"
    : `select(vec4<${o.dtype}>(0.0), vIn[src], k >= 0)`;
  return [
    "    for (var i = lid; i < TILE_K * DV4; i += THREADS) {",
    ...load.map((line) => `      ${line}`),
    `      ${tileStore(o, "v", "i", value)}`,
    "    }",
  ].join("\n");
}

/**
 * An invocation's share of a K/V tile held in registers: slot l is element `lid + l * THREADS`
 * of the tile (key row i / D4), guarded where the tile is not a multiple of the invocations.
 * @returns the slots, and a block of `lines` for slot l (after `let i = ...;`) at `indent`
 */
export function tileSlots(
  o: ComponentKernelOptions,
): { L: number[]; slot: (l: number, indent: string, lines: string[]) => string } {
  const g = kernelGeometry(o);
  const total = o.component.mask.tileK * o.shape.headDim / 4;
  const even = total % g.threads === 0;
  const slot = (l: number, indent: string, lines: string[]) => {
    const i = `lid + ${l * g.threads}u`;
    const body = [`let i = ${i};`, ...lines].map((line) => `${indent}  ${line}`).join("\n");
    return `${indent}${even ? "" : "if (" + i + " < TILE_K * D4) "}{\n${body}\n${indent}}`;
  };
  return { L: range(Math.ceil(total / g.threads)), slot };
}

/**
 * Key tile loop with the next tile's K and V loaded into registers while this one is computed:
 * the global loads' latency hides behind the tile's arithmetic instead of sitting between two
 * barriers, which matters most where a workgroup visits few key tiles (bands, rings).
 */
export function prefetchedTileLoop(
  o: ComponentKernelOptions,
  kPos: Call,
  tagged: boolean,
  grid: Grid,
  keyCodes: Call = call("keyCodes"),
): { prologue: string; loop: string } {
  const { L, slot } = tileSlots(o);
  const codes = stagedCodes(o.component).length > 0;
  const T = o.dtype;
  const paged = o.paged !== undefined;
  const fetch = (indent: string) =>
    L.map((l) =>
      slot(
        l,
        indent,
        grid.naturalK
          ? [
            `let src = ${
              kvSource(paged, `(${sourceRow(grid, "k", kPos, "nextStart + i / D4")})`, "i % D4")
            };`,
            `nextK${l} = kIn[src];`,
            `nextV${l} = vIn[src];`,
          ]
          : grid.complete || grid.padded
          ? [
            `let k = ${kPos("nextStart + i / D4")};`,
            `let src = ${kvSource(paged, grid.complete ? "u32(k)" : "u32(max(k, 0))", "i % D4")};`,
            `nextK${l} = kIn[src];`,
            `nextV${l} = vIn[src];`,
            `nextPos${l} = k;`,
          ]
          : [
            `let k = ${kPos("nextStart + i / D4")};`,
            `let src = ${kvSource(paged, "u32(max(k, 0))", "i % D4")};`,
            `nextK${l} = select(vec4<${T}>(0.0), kIn[src], k >= 0);`,
            `nextV${l} = select(vec4<${T}>(0.0), vIn[src], k >= 0);`,
            `nextPos${l} = k;`,
            ...(codes ? [`if (i % D4 == 0u) { nextCodes${l} = ${keyCodes("max(k, 0)")}; }`] : []),
          ],
      )
    ).join("\n");
  const store = L.map((l) =>
    slot(l, "    ", [
      `let j = i / D4;`,
      ...(grid.naturalK ? [] : [
        `if (i % D4 == 0u) { kPosition[j] = nextPos${l};${
          codes ? ` kCodeTile[j] = nextCodes${l};` : ""
        } }`,
      ]),
      tileStore(o, "k", "j * QK_STRIDE + i % D4", `nextK${l}`),
      tileStore(o, "v", vIndex(o, "j", "i"), `nextV${l}`),
    ])
  ).join("\n");
  const registers = L.map((l) =>
    `  var nextK${l} = vec4<${T}>(0.0);\n  var nextV${l} = vec4<${T}>(0.0);` +
    (grid.naturalK ? "" : `\n  var nextPos${l} = -1;`) +
    (codes ? `\n  var nextCodes${l} = vec4<u32>(0u);` : "")
  ).join("\n");
  const advance = (indent: string) =>
    [
      `hasNext = keyTile != runEnd;`,
      `nextStart = keyTile * TILE_K;`,
      `nextPartial = runPartial;`,
      ...(tagged ? [`nextMember = runMember;`] : []),
      `if (hasNext) {`,
    ].map((line) => indent + line).join("\n") + `\n${fetch(indent + "  ")}\n${indent}}`;
  const prologue =
    `  // The next key tile's K, V and positions, in registers while the current tile is computed;
  // the first one's loads are issued before the query tile is staged.
${registers}
${nextRun("  ", tagged)}
  var hasNext = false;
  var nextStart = 0u;
  var nextPartial = false;${tagged ? "\n  var nextMember = MEMBER;" : ""}
${advance("  ")}`;
  const loop = `  loop {
    if (!hasNext) { break; }
    let isPartial = nextPartial;${tagged ? "\n    let tileMember = nextMember;" : ""}${
    grid.naturalK || grid.padded ? "\n    let kTileStart = nextStart;" : ""
  }
${previousTileDone(o)}
${store}
    workgroupBarrier();
    keyTile++;
${nextRun("    ", tagged)}
${advance("    ")}
`;
  return { prologue, loop };
}

/** Where the key tiles come from: the BlockMask's runs, or a bucket range. */
export function schedule(o: ComponentKernelOptions, refs: MemberRefs): string {
  if (o.component.kLayout.kind !== "sorted") return scheduleRuns(refs);
  if (refs.bucketAt) return bucketRange(o, refs.bucketAt, "each member's round");
  const at = bucketOffsets(o);
  const literals = { order: `${at.order}u`, codes: `${at.codes}u`, starts: `${at.starts}u` };
  return bucketRange(o, literals, layoutLabel(o.component.kLayout));
}

/** The static schedule: this query tile's runs from the BlockMask. */
function scheduleRuns(refs: MemberRefs): string {
  const row = refs.split === "none" && !refs.queryTiles ? "qTileIndex" : "scheduleRow";
  return `  // This query tile's runs of consecutive key tiles of one kind, walked one key tile per step.
  // The slot holds where this component's row pointers and runs start (schedule_buffer.ts).
  let slot = ${HEADER_WORDS}u + ${SLOT_WORDS}u * ${refs.slot};
  let rowsAt = schedule[slot];
  let runsAt = schedule[slot + 1u];
  var run = schedule[rowsAt + ${row}];
  let lastRun = schedule[rowsAt + ${row} + 1u];
  var keyTile = 0u;
  var runEnd = 0u;
  var runPartial = false;${
    refs.taggedRuns
      ? "\n  var runMember = MEMBER;        // whose mask this run's PARTIAL tiles use"
      : ""
  }`;
}

/**
 * Where a bucket-ordered component's round lives in the hash buffer: its queries' bucket codes,
 * their sort order, and the key bucket starts (hash_layout.ts), as word offsets.
 */
export function bucketOffsets(
  o: ComponentKernelOptions,
): { order: number; codes: number; starts: number } {
  const l = o.component.kLayout;
  assert(l.kind === "sorted" && o.hash, "bucketOffsets of a static mask");
  const set = codeSetOf(o.hash, l);
  const rows = set.rowsQ + set.rowsK;
  const n = o.n;
  return {
    codes: set.codes + l.round * rows * n,
    order: set.order + l.round * rows * n,
    starts: set.starts + (l.round * rows + set.rowsQ) * (set.buckets + 1),
  };
}

/**
 * The data-dependent schedule of a bucket-ordered component: the tile's queries, sorted by
 * bucket, span buckets \`first..last\`; their keys are bucket order indices
 * \`[starts[first], starts[last + 1])\`, walked as one run of PARTIAL tiles.
 * @param at the round's offsets (`bucketOffsets`): literals, or a shared module's settings
 * @param label which round, for the comment
 */
function bucketRange(
  o: ComponentKernelOptions,
  at: { order: string; codes: string; starts: string },
  label: string,
): string {
  const l = o.component.kLayout;
  assert(l.kind === "sorted" && o.hash, "bucketRange of a static mask");
  const set = codeSetOf(o.hash, l);
  // Indexed by bh and kvHead, not the private queryRow/keyRow: the loop's barriers need
  // values the uniformity analysis can see are the same across the workgroup.
  return `  // Bucket order (${label}): the tile's queries span buckets
  // first..last, whose keys are one range of the key order; every tile of it is PARTIAL.
  let orderAt = ${at.order} + bh * N;
  let firstQuery = hash[orderAt + qTileIndex * TILE_Q];
  let lastQuery = hash[orderAt + min(${o.queries ? "NQ" : "N"}, qTileIndex * TILE_Q + TILE_Q) - 1u];
  let firstBucket = hash[${at.codes} + bh * N + firstQuery];
  let lastBucket = hash[${at.codes} + bh * N + lastQuery];
  let startsAt = ${at.starts} + kvHead * ${set.buckets + 1}u;
  var keyTile = hash[startsAt + firstBucket] / TILE_K;
  var runEnd = (hash[startsAt + lastBucket + 1u] + TILE_K - 1u) / TILE_K;
  var runPartial = true;
  var run = 0u;                       // one run: the loop ends with it
  let lastRun = 0u;
  let runsAt = 0u;`;
}
