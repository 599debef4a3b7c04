/**
 * The importance phase of `select`'s choice kernel (select_wgsl.ts), in its two forms
 * (`SelectLogits`): from a tile's rows of Q, (position, query head) pairs position-major, and
 * the block means, each position's importance of every competing block: the softmax of each
 * row's logits over its competing blocks, summed over the position's query heads in order.
 * Both forms set position p's importances of its competing blocks (the workgroup's
 * `importance[p * COUNT + j]`, or the held form's rows of the importance buffer) and leave the
 * others untouched; every sum has a fixed order, so the bits are the same every run.
 *
 * - `recomputed`: invocation t holds row `t % R` of Q in registers and takes the blocks
 *   `t / R, t / R + C, ...`; the logits are computed twice, once for each row's maximum and
 *   sum, once for the probabilities, since no memory holds them all.
 * - `held`: the rows of Q in workgroup memory (read by every invocation at the same address),
 *   invocation t scoring blocks `t + W s` (s < SLOTS) against every row, its logits held in
 *   registers: computed once, the block means read once per tile, `R · SLOTS` products per
 *   vec4 of means loaded. Rows' maxima and sums are reduced through workgroup memory.
 * @module
 */
import type { SelectChoice, SelectGeometry, SelectLogits } from "../select_attention.ts";
import type { ShaderModule } from "./shader_module.ts";

/** An importance phase: its constants, workgroup arrays, scratch floats and the tile's code. */
export interface ImportancePhase {
  /** WGSL constants the phase reads (beyond the kernel's own). */
  constants: string;
  /** Its workgroup arrays, scratch excepted. */
  workgroup: string;
  /** Floats of the kernel's `scratch` it uses. */
  scratch: number;
  /** The code of one tile, inside the tile loop after `first`, `end` and the -1 importances. */
  body: string;
}

/**
 * The importance phase of a choice's form.
 * @param m the module (for helper declarations)
 * @param g the geometry
 * @param c the choice
 * @param row where position p's importances start, as WGSL: the workgroup's `importance`
 *   array by default, or the importance buffer's row
 * @returns the phase
 * @example
 * ```ts
 * import { ShaderModule } from "./shader_module.ts";
 * import { importancePhase } from "./select_logits_wgsl.ts";
 * importancePhase(new ShaderModule(), { heads: 1, group: 2, n: 100, d4: 4, blockSize: 16,
 *   count: 7, blocks: 2, initial: 0, local: 0, causal: true, dtype: "f32" },
 *   { invocations: 64, positions: 4, logits: { kind: "held", slots: 1 },
 *     importance: "workgroup", pick: { kind: "rounds" } }).scratch; // 512: 8 rows of 64 partials
 * ```
 */
export function importancePhase(
  m: ShaderModule,
  g: SelectGeometry,
  c: SelectChoice,
  row: (p: string) => string = (p) => `${p} * COUNT`,
): ImportancePhase {
  if (c.logits.kind === "held") return held(m, g, c, c.logits.slots, row);
  if (c.importance === "buffer") {
    throw new Error(
      "Weft internal error: the recomputed form keeps its importances in workgroup memory",
    );
  }
  return recomputed(m, g, c, c.logits);
}

/** 0 .. n - 1. */
function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** The `held` form (module comment). */
function held(
  m: ShaderModule,
  g: SelectGeometry,
  c: SelectChoice,
  slots: number,
  row: (p: string) => string,
): ImportancePhase {
  m.declare("add", "fn add(a: f32, b: f32) -> f32 { return a + b; }");
  const W = c.invocations, TP = c.positions, R = TP * g.group;
  const rows = range(R), S = range(slots), P = range(TP);
  const parts = Math.floor(W / R);
  const at = (r: number) => Math.floor(r / g.group); // the tile position of row r
  const seen = (r: number, s: number) => `t + ${s * W}u < end${at(r)}`;
  const logit = (r: number, s: number) => `l${r}_${s}`;
  // The scores of the first `active` slots, all rows: one loop over the head dim, the slots'
  // vec4s of means loaded once and multiplied by each row's vec4 of Q.
  const scoring = (active: number) =>
    `        for (var d = 0u; d < D4; d++) {
${
      range(active).map((s) =>
        `          let m${s} = means[(head * D4 + d) * COUNT + min(t + ${s * W}u, COUNT - 1u)];`
      ).join("\n")
    }
${
      rows.map((r) =>
        `          { let x = qTile[${r}u * D4 + d]; ${
          range(active).map((s) => `${logit(r, s)} += dot(x, m${s});`).join(" ")
        } }`
      ).join("\n")
    }
        }`;
  // Row r's W partials (scratch[r W + i]) folded by `op` in a fixed order: PARTS invocations
  // per row take every PARTS-th partial, then one invocation per row takes the parts in order.
  const reduce = (op: string, into: string) =>
    `    if (t < R * PARTS) {
      let base = (t / PARTS) * W;
      var x = scratch[base + t % PARTS];
      for (var i = t % PARTS + PARTS; i < W; i += PARTS) { x = ${op}(x, scratch[base + i]); }
      scratch[base + t % PARTS] = x;
    }
    workgroupBarrier();
    if (t < R) {
      var x = scratch[t * W];
      for (var i = 1u; i < PARTS; i++) { x = ${op}(x, scratch[t * W + i]); }
      ${into}[t] = x;
    }
    workgroupBarrier();`;
  return {
    constants: `const R = ${R}u;  // rows of a tile: (position, query head), position-major
const SLOTS = ${slots}u;  // blocks t + W s, s < SLOTS, per invocation
const PARTS = ${parts}u;  // invocations per row folding its W partials`,
    workgroup: `var<workgroup> qTile: array<vec4<f32>, ${
      R * g.d4
    }>;  // the tile's rows of Q, scaled
var<workgroup> rowMax: array<f32, ${R}>;
var<workgroup> rowSum: array<f32, ${R}>;`,
    scratch: R * W,
    body: `    // Competing blocks of each position of the tile (none past N).
${
      P.map((p) =>
        `    let end${p} = select(0u, competingBlocks(first + ${p}u), first + ${p}u < N);`
      ).join("\n")
    }
    for (var e = t; e < R * D4; e += W) {
      let r = e / D4;
      let pos = min(first + r / GROUP, N - 1u);
      qTile[e] = vec4<f32>(qIn[((head * GROUP + r % GROUP) * N + pos) * D4 + e % D4]) * QSCALE;
    }
    workgroupBarrier();
    // Logits (base 2) of blocks t + W s against every row, held in registers: only the slots
    // that hold a competing block for some position of the tile are scored.
${rows.map((r) => `    ${S.map((s) => `var ${logit(r, s)} = 0.0;`).join(" ")}`).join("\n")}
    switch min(SLOTS, (end + W - 1u) / W) {
${range(slots).map((s) => `      case ${s + 1}u: {\n${scoring(s + 1)}\n      }`).join("\n")}
      default: {}
    }
    // Each row's maximum, then its sum of exp2(logit - maximum), over its competing blocks.
${
      rows.map((r) =>
        `    scratch[${r}u * W + t] = max(NO_SCORE, ${
          S.map((s) => `select(NO_SCORE, ${logit(r, s)}, ${seen(r, s)})`).reduce((a, b) =>
            `max(${a}, ${b})`
          )
        });`
      ).join("\n")
    }
    workgroupBarrier();
${reduce("max", "rowMax")}
    // The logits become exp2(logit - maximum), 0 where not competing: the sums' terms and,
    // divided by the sums, the probabilities.
${
      rows.map((r) =>
        `    ${
          S.map((s) =>
            `${logit(r, s)} = select(0.0, exp2(${logit(r, s)} - rowMax[${r}]), ${seen(r, s)});`
          ).join(" ")
        }\n    scratch[${r}u * W + t] = ${S.map((s) => logit(r, s)).join(" + ")};`
      ).join("\n")
    }
    workgroupBarrier();
${reduce("add", "rowSum")}
    // Each competing block's importance: its probabilities under the position's heads, in order.
${
      S.flatMap((s) =>
        P.map((p) => {
          const heads = range(g.group).map((h) => p * g.group + h);
          return `    if (${seen(p * g.group, s)}) {
      importance[${row(`${p}u`)} + t + ${s * W}u] = ${
            heads.map((r) => `${logit(r, s)} / rowSum[${r}]`).join(" + ")
          };
    }`;
        })
      ).join("\n")
    }
    workgroupBarrier();`,
  };
}

/** The `recomputed` form (module comment). */
function recomputed(
  m: ShaderModule,
  g: SelectGeometry,
  c: SelectChoice,
  l: Extract<SelectLogits, { kind: "recomputed" }>,
): ImportancePhase {
  const W = c.invocations, TP = c.positions;
  const R = TP * g.group, C = Math.floor(W / R), CB = C * l.chunk;
  const D = range(g.d4);
  // Four interleaved partial sums, so the dot products do not wait on one another, added in a
  // fixed order. Constant indices keep the Q row in registers: a value (SSA) certainly, a
  // private array where the driver promotes it.
  const ways = Math.min(4, g.d4);
  const partial = (w: number) =>
    D.filter((d) => d % ways === w).map((d) => `dot(q[${d}], means[at + ${d}u * COUNT])`).join(
      " + ",
    );
  const byValue = l.rowQ === "value";
  m.declare(
    "blockLogit",
    `${
      byValue ? "" : `
var<private> q: array<vec4<f32>, ${g.d4}>;  // the invocation's row of Q, scaled
`
    }
/** The logit (base 2) of the invocation's row${
      byValue ? " q" : ""
    } against the mean of block j of head. */
fn blockLogit(head: u32, j: u32${byValue ? `, q: array<vec4<f32>, ${g.d4}>` : ""}) -> f32 {
  let at = head * ${g.d4 * g.count}u + j;
${D.slice(0, ways).map((w) => `  let part${w} = ${partial(w)};`).join("\n")}
  return ${D.slice(0, ways).map((w) => `part${w}`).join(" + ")};
}`,
  );
  const qArg = byValue ? ", q" : "";
  const loadQ = byValue
    ? `    let q = array<vec4<f32>, ${g.d4}>(
${D.map((d) => `      vec4<f32>(qIn[qRow + ${d}u]) * QSCALE,`).join("\n")}
    );`
    : D.map((d) => `    q[${d}] = vec4<f32>(qIn[qRow + ${d}u]) * QSCALE;`).join("\n");
  return {
    constants: `const R = ${R}u;  // rows of a tile: (position, query head), position-major
const C = ${C}u;  // block lanes: invocation t takes row t % R, blocks t / R + C i
const CB = ${CB}u;  // blocks per chunk of the second pass: ${l.chunk} per invocation`,
    workgroup: `var<workgroup> rowMax: array<f32, ${R}>;
var<workgroup> rowSum: array<f32, ${R}>;`,
    // Per-lane row statistics (2 C R), then a chunk's probabilities (R rows of CB + 1, the
    // padding keeps both their writers and their readers on distinct banks).
    scratch: Math.max(2 * C * R, R * (CB + 1)),
    body: `    let r = t % R;
    let lane = t / R;  // C or more: no row, only barriers in the logit passes
    let pos = min(first + r / GROUP, N - 1u);  // a row past N repeats the last and is not written
    let rowEnd = competingBlocks(pos);
    // The row's query, scaled, in registers.
    let qRow = ((head * GROUP + r % GROUP) * N + pos) * D4;
${loadQ}
    // Pass 1: the row's running maximum and sum over this lane's blocks.
    var most = NO_SCORE;
    var total = 0.0;
    if (lane < C) {
      for (var j = lane; j < rowEnd; j += C) {
        // total * exp2(most - top) + exp2(logit - top) with one exp2: one of the two is 1.
        let logit = blockLogit(head, j${qArg});
        let gap = logit - most;
        let e = exp2(-abs(gap));
        total = select(total + e, total * e + 1.0, gap > 0.0);
        most = max(most, logit);
      }
      scratch[lane * R + r] = most;
      scratch[(C + lane) * R + r] = total;
    }
    workgroupBarrier();
    if (t < R) {
      // The lanes' statistics merged in lane order.
      var top = NO_SCORE;
      for (var c = 0u; c < C; c++) { top = max(top, scratch[c * R + t]); }
      var sum = 0.0;
      for (var c = 0u; c < C; c++) { sum += scratch[(C + c) * R + t] * exp2(scratch[c * R + t] - top); }
      rowMax[t] = top;
      rowSum[t] = sum;
    }
    workgroupBarrier();
    // Pass 2: a chunk's probabilities by row, then each (position, block)'s heads in order.
    for (var base = 0u; base < end; base += CB) {
      if (lane < C) {
        let top = rowMax[r];
        let sum = rowSum[r];
        for (var i = 0u; i < CB; i += C) {
          let j = base + i + lane;
          var prob = 0.0;
          if (j < rowEnd && sum > 0.0) {
            prob = exp2(blockLogit(head, j${qArg}) - top) / sum;
          }
          scratch[r * (CB + 1u) + i + lane] = prob;
        }
      }
      workgroupBarrier();
      for (var e = t; e < TP * CB; e += W) {
        let p = e / CB;
        let j = base + e % CB;
        if (first + p < N && j < competingBlocks(first + p)) {
          var added = 0.0;
          for (var k = 0u; k < GROUP; k++) { added += scratch[(p * GROUP + k) * (CB + 1u) + e % CB]; }
          importance[p * COUNT + j] = added;
        }
      }
      workgroupBarrier();
    }`,
  };
}
