/**
 * The subgroup form of `select`'s attention (select_attention_wgsl.ts is the staged form), for
 * devices with subgroups, in the manner of the decode kernel's lanes (decode_lanes_wgsl.ts): one
 * workgroup per (position, key/value head), its rows the group's query heads, but no key passes
 * through workgroup memory. The invocations form groups of LANES consecutive lanes of one
 * subgroup; a group takes KEYS of the position's kept keys at a time, each lane loading its
 * vec4s of their K and V rows straight into registers. A key's score for each row is the lanes'
 * partial dot products summed by a butterfly of `subgroupShuffleXor` (every lane ends with the
 * same bits), and each group keeps its own running maximum, sum and O rows in registers. At the
 * end the groups merge by log-sum-exp: within a subgroup by shuffles, then across subgroups in a
 * fixed order through workgroup memory, so results are bitwise the same from run to run. The
 * only barriers are two per position (the kept list, the merge).
 * @module
 */
import type { DecodeLanes } from "../decode.ts";
import { DECODE_LANE_THREADS } from "../decode.ts";
import type { SelectGeometry } from "../select_attention.ts";
import { laneMerge, laneMergeMemory } from "./lane_merge_wgsl.ts";
import { declareNegativeInfinity, f32, ShaderModule } from "./shader_module.ts";

/**
 * The subgroup-form attention kernel of one select branch.
 * @param g the geometry
 * @param o scale, x workgroups, where the branch's O (vec4s) and LSE lie, and the lanes' split
 * @returns the module text
 * @example
 * ```ts
 * import { selectLanesKernel } from "./select_lanes_wgsl.ts";
 * selectLanesKernel({ heads: 1, group: 2, n: 100, d4: 4, blockSize: 16, count: 7,
 *   blocks: 2, initial: 0, local: 1, causal: true, dtype: "f32" }, {
 *   scale: 0.25, groupsX: 100, oBase: 0, lseBase: 0,
 *   lanes: { lanes: 2, keys: 1, wide: false, stepTiles: 64, subgroupSize: 8, directive: false },
 * });
 * ```
 */
export function selectLanesKernel(
  g: SelectGeometry,
  o: { scale: number; groupsX: number; oBase: number; lseBase: number; lanes: DecodeLanes },
): string {
  const T = g.dtype, L = o.lanes;
  const per = g.d4 / L.lanes; // vec4s of a K or V row per lane
  const rows = g.group, units = DECODE_LANE_THREADS / L.subgroupSize;
  const R = range(rows), J = range(L.keys), V = range(per);
  const each = <X>(xs: X[], f: (x: X) => string, sep = "\n") => xs.map(f).join(sep);
  // The row vec4 a lane's slot v holds: wide lanes read two neighbouring vec4s as one vec4<u32>.
  const slot = (v: number) =>
    L.wide ? `2u * (lane + ${Math.floor(v / 2) * L.lanes}u) + ${v % 2}u` : `lane + ${v * L.lanes}u`;
  const load = (name: string, j: number) =>
    L.wide
      ? each(range(per / 2), (p) => {
        const w = `${name}w${j}_${p}`;
        return `      let ${w} = ${name}In[row${j} * (D4 / 2u) + lane + ${p * L.lanes}u];
      let ${name}${j}_${2 * p} = vec4<f32>(unpack2x16float(${w}.x), unpack2x16float(${w}.y));
      let ${name}${j}_${2 * p + 1} = vec4<f32>(unpack2x16float(${w}.z), unpack2x16float(${w}.w));`;
      })
      : each(V, (v) =>
        `      let ${name}${j}_${v} = vec4<f32>(${name}In[row${j} * D4 + lane + ${
          v * L.lanes
        }u]);`);
  const laneMasks = masks(1, L.lanes), groupMasks = masks(L.lanes, L.subgroupSize);
  const kv = L.wide ? "u32" : T;

  const m = new ShaderModule().comment(
    `Weft select attention (subgroup lanes): ${g.blocks} kept blocks of ${g.blockSize} keys per ` +
      `position (N=${g.n}${g.causal ? ", causal" : ""}), rows = ${rows} query heads of a ` +
      `key/value head, groups of ${L.lanes} lanes taking ${L.keys} key(s) at a time; ` +
      `workgroup ${DECODE_LANE_THREADS}`,
  );
  if (T === "f16") m.enable("f16");
  if (L.directive) m.enable("subgroups");
  m.declare(
    "bindings",
    `
@group(0) @binding(0) var<storage, read> qIn: array<vec4<${T}>>;
@group(0) @binding(1) var<storage, read> kIn: array<vec4<${kv}>>;
@group(0) @binding(2) var<storage, read> vIn: array<vec4<${kv}>>;
@group(0) @binding(3) var<storage, read> kept: array<u32>;
@group(0) @binding(4) var<storage, read_write> oOut: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> lseOut: array<f32>;`,
  );
  const negInf = declareNegativeInfinity(m);
  const keys = g.blocks * g.blockSize, groups = DECODE_LANE_THREADS / L.lanes;
  return m.render(`
const N = ${g.n}u;
const D4 = ${g.d4}u;
const GROUP = ${g.group}u;  // rows: the query heads of a key/value head
const BLOCKS = ${g.blocks}u;
const BLOCK = ${g.blockSize}u;
const THREADS = ${DECODE_LANE_THREADS}u;
const LANES = ${L.lanes}u;  // lanes sharing a key: lane l holds vec4s l, l + LANES, ... of its rows
const GROUPS = ${groups}u;
const KEYS = ${L.keys}u;  // keys a group loads at once
const ROUNDS = ${Math.ceil(keys / (groups * L.keys))}u;  // of all groups over the kept keys
const SUBGROUP = ${L.subgroupSize}u;  // the device's smallest subgroup: its groups merge by shuffles
const UNITS = ${units}u;  // subgroup-sized units, merged in order through workgroup memory
const GRID_X = ${o.groupsX}u;
const QSCALE = ${f32(o.scale * Math.LOG2E)}; // scale * log2(e): scores in base 2
const LN2 = ${f32(Math.LN2)};
const NO_SCORE = -1.0e30;  // below any real score; never reaches exp2 unguarded
const EMPTY = 0xffffffffu;  // a kept slot past the kept blocks

var<workgroup> blockList: array<u32, ${g.blocks}>;
${laneMergeMemory(units, rows, g.d4)}

@compute @workgroup_size(${DECODE_LANE_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let head = wg.y; // batch * Hkv + key/value head; its query heads are head * GROUP + r
  let lane = lid % LANES;
  let group = lid / LANES;
  for (var pos = wg.x; pos < N; pos += GRID_X) {
    for (var s = lid; s < BLOCKS; s += THREADS) { blockList[s] = kept[(head * N + pos) * BLOCKS + s]; }
    // Row r's query, the lane's vec4s of it, scaled.
${
    each(R, (r) =>
      `    let qRow${r} = ((head * GROUP + ${r}u) * N + pos) * D4;
${each(V, (v) => `    let q${r}_${v} = vec4<f32>(qIn[qRow${r} + ${slot(v)}]) * QSCALE;`)}
    var max${r} = NO_SCORE;
    var sum${r} = 0.0;
${each(V, (v) => `    var acc${r}_${v} = vec4<f32>(0.0);`)}`)
  }
    workgroupBarrier();
    // Group g takes kept keys (i * GROUPS + g) * KEYS .. + KEYS - 1, all lanes the same trip
    // count (the shuffles need every lane); an empty slot or a key not seen scores nothing.
    for (var i = 0u; i < ROUNDS; i++) {
      let first = (i * GROUPS + group) * KEYS;
${
    each(J, (j) =>
      `      let kk${j} = first + ${j}u;
      let block${j} = blockList[min(kk${j} / BLOCK, BLOCKS - 1u)];
      let key${j} = block${j} * BLOCK + kk${j} % BLOCK;
      let seen${j} = kk${j} < BLOCKS * BLOCK && block${j} != EMPTY && key${j} < N${
        g.causal ? ` && key${j} <= pos` : ""
      };
      let row${j} = select(0u, head * N + key${j}, seen${j});
${load("k", j)}
${load("v", j)}`)
  }
      // Scores: the lanes' partial dot products, summed across the key's lanes.
${
    each(R, (r) =>
      each(J, (j) =>
        `      var s${r}_${j} = ${
          each(V, (v) =>
            `dot(q${r}_${v}, k${j}_${v})`, " + ")
        };
${each(laneMasks, (mask) => `      s${r}_${j} += subgroupShuffleXor(s${r}_${j}, ${mask}u);`)}
      s${r}_${j} = select(NO_SCORE, s${r}_${j}, seen${j});`))
  }
      // Each row's running maximum, sum and O: rescaled once per KEYS keys.
${
    each(R, (r) =>
      `      {
        let most = max(max${r}, ${J.map((j) => `s${r}_${j}`).reduce((a, b) => `max(${a}, ${b})`)});
        let rescale = exp2(max${r} - most);  // 1 while the row has seen nothing
        max${r} = most;
${each(J, (j) => `        let p${j} = select(0.0, exp2(s${r}_${j} - most), seen${j});`)}
        sum${r} = sum${r} * rescale + ${J.map((j) => `p${j}`).join(" + ")};
${
        each(V, (v) =>
          `        acc${r}_${v} = acc${r}_${v} * rescale + ${
            J.map((j) => `p${j} * v${j}_${v}`).join(" + ")
          };`)
      }
      }`)
  }
    }

${
    laneMerge({
      rows,
      slots: per,
      rowsName: "GROUP",
      width: "D4",
      slot,
      masks: groupMasks,
      indent: "    ",
    })
  }
    // The position's rows, normalised, and their LSE.
    for (var e = lid; e < GROUP * D4; e += THREADS) {
      let r = e / D4;
      var total = 0.0;
      var most = NO_SCORE;
${each(R, (r) => `      if (r == ${r}u) { total = total${r}; most = most${r}; }`)}
      let at = (head * GROUP + r) * N + pos;
      oOut[${o.oBase}u + at * D4 + e % D4] = select(vec4<f32>(0.0), outRows[e] / total, total > 0.0);
      if (e % D4 == 0u) {
        lseOut[${o.lseBase}u + at] = select(${negInf}(), (most + log2(total)) * LN2, total > 0.0);
      }
    }
    workgroupBarrier();  // the next position overwrites the kept list and the O rows
  }
}`);
}

/** 0 .. n - 1. */
function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Powers of two from `from` up to (not including) `below`: a butterfly's xor masks. */
function masks(from: number, below: number): number[] {
  const out: number[] = [];
  for (let mask = from; mask < below; mask *= 2) out.push(mask);
  return out;
}
