/**
 * The float64 reference's gradients: the analytic backward pass of `reference`, for the loss
 * whose gradient with respect to O is the given dO. Per branch and query row (one softmax),
 * with P the softmax weights, s the raw scores `scale * q·k` and f the score modifier:
 *
 *   dP_j = dO_i · V_j,   Δ = Σ_j P_j dP_j = dO_i · O_i,   dS_j = P_j (dP_j - Δ) f'(s_j),
 *   dQ += scale Σ_j dS_j K_j,   dK_j += scale dS_j Q,   dV_j += P_j dO_i,
 *
 * where dO_i = g_i dO for a gated branch i (and dg_i = dO · O_i). Landmarks are means of their
 * segment's K and V rows, so a landmark's gradient is shared equally by those rows; hashBucket
 * codes are fixed by the forward (the allowed set does not move with the inputs); a linear
 * branch's rows go through linear.ts; query heads
 * of a group add into their key/value head. Loops, not speed: it is the oracle the GPU's
 * backward and the finite differences are checked against.
 * @module
 */
import { ShapeError } from "../../core/errors.ts";
import { sequenceSizes } from "../../core/shape.ts";
import { landmarkGeometry } from "../../dsl/low_rank.ts";
import { learnableConstants } from "../../dsl/expression_check.ts";
import type { Pattern } from "../../dsl/schema.ts";
import type { ConstantSlope } from "./expression_eval.ts";
import { type KeySource, type ReferenceInput, referenceSetup } from "./reference.ts";

/** A reference call's inputs plus the gradient of the loss with respect to O. */
export interface GradientInput extends ReferenceInput {
  /** `[B, Hq, Nq, Dv]`: ∂loss/∂O. */
  dO: ArrayLike<number>;
}

/** ∂loss/∂ of every input, float64, in the inputs' layouts. */
export interface ReferenceGradients {
  /** `[B, Hq, Nq, D]` */
  dq: Float64Array;
  /** `[B, Hkv, Nk, D]` */
  dk: Float64Array;
  /** `[B, Hkv, Nk, Dv]` */
  dv: Float64Array;
  /**
   * Gated patterns with runtime gates: the gates' gradient in their layout (`[B, Hq, branches]`
   * or `[B, Hq, N, branches]`); JSON or default gates are constants and have none.
   */
  dgates?: Float64Array;
  /**
   * Patterns whose score modifiers have learnable constants: each one's gradient by name, a
   * number for a number and an array of its length for an array.
   */
  dConstants?: Record<string, number | Float64Array>;
  /**
   * What each learnable constant's gradient's rounding grows with: Σ p (|dP| + |Δ|) |∂score/∂c|
   * over the entries it sums, in `dConstants`' layout. The gradient itself may be far smaller
   * (the terms cancel; under a near one-hot softmax it is a rounding residue), so a float32
   * result is judged against this, not against its own size.
   */
  dConstantsScale?: Record<string, number | Float64Array>;
}

/**
 * The gradients of `reference`'s O (DESIGN §6) with respect to q, k, v and runtime gates.
 * @param input the forward's input and dO
 * @returns dq, dk, dv (and dgates for runtime gates)
 * @throws as `reference`, and {ShapeError} when dO is not `[B, Hq, Nq, Dv]`
 * @example
 * ```ts
 * import { referenceGradients } from "./gradients.ts";
 * const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen: 2, headDim: 1 };
 * const g = referenceGradients({
 *   pattern: { kind: "causal" }, shape, q: [0, 0], k: [0, 0], v: [1, 3], dO: [1, 1],
 * });
 * console.log(g.dv); // Float64Array [1.5, 0.5]: row 0 puts all of its weight on key 0
 * ```
 */
export function referenceGradients(input: GradientInput): ReferenceGradients {
  const setup = referenceSetup(input);
  const { batch: B, headsQ: Hq, headsKV: Hkv } = input.shape;
  const { nq: N, nk: Nk, d: D, dv: Dv } = sequenceSizes(input.shape);
  if (input.dO.length !== B * Hq * N * Dv) {
    const formula = input.shape.valueDim === undefined ? "B*Hq*N*D" : "B*Hq*N*Dv";
    throw new ShapeError(
      `Bad input: dO has ${input.dO.length} elements, expected ${formula} = ${B * Hq * N * Dv}`,
    );
  }
  const dq = new Float64Array(B * Hq * N * D);
  const dk = new Float64Array(B * Hkv * Nk * D);
  const dv = new Float64Array(B * Hkv * Nk * Dv);
  const branches = setup.branches.length;
  const dgates = setup.gateLayout === "fixed"
    ? undefined
    : new Float64Array(B * Hq * (setup.gateLayout === "position" ? N : 1) * branches);
  // Landmark gradients, per branch, sequence and rank, pooled `[B·Hkv, count, D]` (and Dv),
  // spread to their rows at the end.
  const pooled = new Map<
    string,
    { rank: number; sequence: number; dk: Float64Array; dv: Float64Array; count: number }
  >();
  const pooledOf = (i: number, l: NonNullable<KeySource["landmarks"]>) => {
    const key = `${i}/${l.sequence}/${l.rank}`;
    let entry = pooled.get(key);
    if (!entry) {
      entry = {
        rank: l.rank,
        sequence: l.sequence,
        count: l.count,
        dk: new Float64Array(B * Hkv * l.count * D),
        dv: new Float64Array(B * Hkv * l.count * Dv),
      };
      pooled.set(key, entry);
    }
    return entry;
  };
  const learnable = learnableConstants(input.pattern as Pattern);
  const dConstantSums: Record<string, Float64Array> = {};
  const dConstantScales: Record<string, Float64Array> = {};
  for (const [name, c] of learnable) {
    dConstantSums[name] = new Float64Array(c.size);
    dConstantScales[name] = new Float64Array(c.size);
  }
  const dORow = new Float64Array(Dv), oRow = new Float64Array(Dv);
  setup.forEachRow((b, h, q, qRow, i, sources) => {
    const g = setup.gate(b, h, q, i);
    const dOAt = ((b * Hq + h) * N + q) * Dv;
    for (let d = 0; d < Dv; d++) dORow[d] = g * input.dO[dOAt + d];
    const branch = setup.branches[i];
    const targets = sources.map((s) => s.landmarks ? pooledOf(i, s.landmarks) : { dk, dv });
    if (branch.linear) branch.linear.backward(b, h, q, { dO: dORow, dq, dv, out: oRow });
    else {softmaxRowBackward({
        q: input.q,
        qRow,
        sources,
        targets,
        D,
        Dv,
        scale: setup.scale,
        score: branch.score(b, h, q),
        slope: branch.scoreSlope(b, h, q),
        constantSlopes: branch.scoreConstantSlopes(b, h, q),
        dConstants: dConstantSums,
        dConstantsScale: dConstantScales,
        dO: dORow,
        dq,
        o: oRow,
      });}
    if (dgates) {
      // O = Σ_i g_i O_i: ∂loss/∂g_i = dO · O_i.
      let dot = 0;
      for (let d = 0; d < Dv; d++) dot += input.dO[dOAt + d] * oRow[d];
      const at = setup.gateLayout === "position"
        ? ((b * Hq + h) * N + q) * branches + i
        : (b * Hq + h) * branches + i;
      dgates[at] += dot;
    }
  });
  // A linear branch's keys: their φ gradients through the feature map.
  for (const branch of setup.branches) branch.linear?.finish(dk);
  // A landmark is the mean of its segment's rows: each row gets its share of the gradient.
  for (const l of pooled.values()) {
    const seq = setup.sequences[l.sequence];
    const { segment } = landmarkGeometry(seq.kLen, l.rank);
    for (let head = 0; head < B * Hkv; head++) {
      const first = head * Nk + seq.kStart;
      for (let j = 0; j < l.count; j++) {
        const from = j * segment, end = Math.min(seq.kLen, from + segment);
        for (let r = from; r < end; r++) {
          for (let d = 0; d < D; d++) {
            dk[(first + r) * D + d] += l.dk[(head * l.count + j) * D + d] / (end - from);
          }
          for (let d = 0; d < Dv; d++) {
            dv[(first + r) * Dv + d] += l.dv[(head * l.count + j) * Dv + d] / (end - from);
          }
        }
      }
    }
  }
  const byName = (sums: Record<string, Float64Array>) =>
    Object.fromEntries(
      [...learnable].map(([name, c]) => [name, c.scalar ? sums[name][0] : sums[name]]),
    );
  return {
    dq,
    dk,
    dv,
    ...(dgates ? { dgates } : {}),
    ...(learnable.size
      ? { dConstants: byName(dConstantSums), dConstantsScale: byName(dConstantScales) }
      : {}),
  };
}

/**
 * One softmax row's backward: adds its share to dq (at `qRow`) and to each source's dK and dV
 * (at the source's rows), and leaves the row's O (this branch alone) in `o`. An empty row adds
 * nothing.
 */
function softmaxRowBackward(args: {
  q: ArrayLike<number>;
  qRow: number;
  sources: KeySource[];
  /** Where each source's K and V gradients go (token rows, or a rank's pooled landmarks). */
  targets: { dk: Float64Array; dv: Float64Array }[];
  D: number;
  Dv: number;
  scale: number;
  score?: (s: number, k: number) => number;
  slope?: (s: number, k: number) => number;
  /** The score's derivatives in learnable entries, and where their gradients add up. */
  constantSlopes?: (s: number, k: number) => ConstantSlope[];
  dConstants: Record<string, Float64Array>;
  /** And what their rounding grows with (ReferenceGradients.dConstantsScale). */
  dConstantsScale: Record<string, Float64Array>;
  /** ∂loss/∂(this branch's O row): dO times the branch's gate. */
  dO: Float64Array;
  dq: Float64Array;
  o: Float64Array;
}): void {
  const { q, qRow, sources, targets, D, Dv, scale, score, slope, constantSlopes, dO, dq, o } = args;
  o.fill(0);
  const raw = sources.map((s) =>
    s.keys.map((k) => {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[qRow + d] * s.k[s.kBase + k * D + d];
      return scale * dot;
    })
  );
  const scores = raw.map((row, i) => row.map((x, j) => score ? score(x, sources[i].keys[j]) : x));
  let max = -Infinity;
  for (const row of scores) for (const x of row) max = Math.max(max, x);
  if (max === -Infinity) return;
  const weights = scores.map((row) => row.map((x) => Math.exp(x - max)));
  let sum = 0;
  for (const row of weights) for (const w of row) sum += w;
  const p = weights.map((row) => row.map((w) => w / sum));
  // O, dP = dO · V, and Δ = Σ P dP = dO · O.
  const dP = sources.map((s, i) =>
    s.keys.map((k, j) => {
      let dot = 0;
      for (let d = 0; d < Dv; d++) {
        const v = s.v[s.vBase + k * Dv + d];
        o[d] += p[i][j] * v;
        dot += dO[d] * v;
      }
      return dot;
    })
  );
  let delta = 0;
  for (let d = 0; d < Dv; d++) delta += dO[d] * o[d];
  sources.forEach((s, i) => {
    const t = targets[i];
    s.keys.forEach((k, j) => {
      // ∂loss/∂score, then through the modifier to the raw score and its learnable entries.
      const dScore = p[i][j] * (dP[i][j] - delta);
      const dS = dScore * (slope ? slope(raw[i][j], k) : 1);
      if (constantSlopes) {
        for (const t of constantSlopes(raw[i][j], k)) {
          args.dConstants[t.name][t.index] += dScore * t.slope;
          args.dConstantsScale[t.name][t.index] += p[i][j] *
            (Math.abs(dP[i][j]) + Math.abs(delta)) * Math.abs(t.slope);
        }
      }
      const kAt = s.kBase + k * D, vAt = s.vBase + k * Dv;
      for (let d = 0; d < D; d++) {
        dq[qRow + d] += scale * dS * s.k[kAt + d];
        t.dk[kAt + d] += scale * dS * q[qRow + d];
      }
      for (let d = 0; d < Dv; d++) t.dv[vAt + d] += p[i][j] * dO[d];
    });
  });
}
