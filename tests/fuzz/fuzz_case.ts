/**
 * One fuzz case: a pattern, a shape, an input magnitude and a data seed. `checkCase` runs it on
 * the GPU and compares with the float64 reference; `shrinkCase` makes a failing case smaller
 * (shorter N, fewer heads and batches, smaller D, magnitude 1, a combinator replaced by one of
 * its members) for as long as it still fails, so what gets saved is small enough to read. V, O
 * and dO have the shape's value head dim Dv (`valueDim`, default D; DESIGN §1).
 * @module
 */
import type { AttentionShape } from "../../compiler/mod.ts";
import { PlanError } from "../../core/errors.ts";
import { sequenceSizes } from "../../core/shape.ts";
import type { Pattern } from "../../dsl/schema.ts";
import type { HashCodes } from "../../dsl/hash_bucket.ts";
import { parsePattern } from "../../dsl/schema.ts";
import {
  hashCodeMismatches,
  reference,
  referenceGradients,
  selectionDisagreements,
} from "../../runtime/reference/mod.ts";
import type { AttentionGradients } from "../../runtime/attention_call.ts";
import type { SelectedBlocks } from "../../runtime/reference/mod.ts";
import { constantGradientError, gradientError } from "../../cli/_common.ts";
import type { Runtime } from "../../runtime/runtime.ts";
import { mulberry32, normals } from "../../runtime/seeded_random.ts";

export interface FuzzCase {
  pattern: Pattern;
  shape: AttentionShape;
  /** q and k are unit normals times this (scores grow with its square). */
  magnitude: number;
  seed: number;
  /** Gated patterns: a runtime gate tensor `[B, Hq, branches]` instead of JSON/default gates. */
  runtimeGates: boolean;
  /** Element type of the call (default f32); float16 is checked on float16-rounded inputs. */
  dtype?: "f32" | "f16";
  /** Also run the backward pass and check dQ, dK, dV (and dgates) against the reference's. */
  grad?: boolean;
}

/** What checking a case found. */
export interface CaseResult {
  status: "ok" | "mismatch" | "refused";
  errO: number;
  errLse: number;
  tolerance: number;
  /** Why, when not ok. */
  detail?: string;
}

/**
 * The tolerance (DESIGN §4: 1e-4 in float32, 5e-3 in float16) widened with the scores' size:
 * rounding grows with |score|.
 */
export function tolerance(magnitude: number, dtype: "f32" | "f16" = "f32"): number {
  return (dtype === "f16" ? 5e-3 : 1e-4) * Math.max(1, magnitude * magnitude);
}

/** The case's inputs, rounded to float32 as the kernels see them: V `[B, Hkv, N, Dv]`. */
export function caseInputs(c: FuzzCase) {
  const { batch: B, headsQ: Hq, headsKV: Hkv, seqLen: N } = c.shape;
  const { d: D, dv: Dv } = sequenceSizes(c.shape);
  const next = normals(c.seed);
  const q = Float32Array.from({ length: B * Hq * N * D }, () => c.magnitude * next());
  const k = Float32Array.from({ length: B * Hkv * N * D }, () => c.magnitude * next());
  const v = Float32Array.from({ length: B * Hkv * N * Dv }, next);
  const branches = c.pattern.kind === "gated" ? c.pattern.branches.length : 0;
  const gates = branches && c.runtimeGates
    ? Float32Array.from({ length: B * Hq * branches }, mulberry32(c.seed ^ 0x5bd1e995))
    : undefined;
  return { q, k, v, gates };
}

/**
 * Runs a case on the runtime's device and compares with the reference.
 * @param rt the runtime
 * @param c the case
 * @returns ok, mismatch (with the errors or the exception) or refused (a PlanError)
 */
export async function checkCase(
  rt: Runtime,
  c: FuzzCase,
  tiles?: { tileQ: number; tileK: number },
): Promise<CaseResult> {
  const dtype = c.dtype ?? "f32";
  const tol = tolerance(c.magnitude, dtype);
  const inputs = caseInputs(c);
  if (dtype === "f16") {
    // The reference sees exactly what the kernels see: the inputs rounded to float16.
    for (const x of [inputs.q, inputs.k, inputs.v]) x.set(Float16Array.from(x));
  }
  // The backward pass: a seeded dO, and runtime gates when the case has them.
  const dO = c.grad ? Float32Array.from(dOValues(c)) : undefined;
  // float16: the reference sees dO as the kernels do, rounded.
  if (dO && dtype === "f16") dO.set(Float16Array.from(dO));
  let out;
  try {
    const compiled = rt.compile(c.pattern, { shape: c.shape, tiles, dtype, backward: c.grad });
    out = await rt.run(compiled, { ...inputs, ...(dO ? { dO } : {}) });
  } catch (error) {
    const e = error as Error;
    // A plan the compiler refuses with a message (e.g. too many terms) is not a wrong answer.
    if (error instanceof PlanError) {
      return { status: "refused", errO: 0, errLse: 0, tolerance: tol, detail: e.message };
    }
    return {
      status: "mismatch",
      errO: NaN,
      errLse: NaN,
      tolerance: tol,
      detail: `${e.name}: ${e.message}`,
    };
  }
  const gates = inputs.gates && {
    data: inputs.gates,
    shape: [c.shape.batch, c.shape.headsQ, inputs.gates.length / (c.shape.batch * c.shape.headsQ)],
  };
  // hashBucket: the GPU's codes must agree wherever a projection is clearly signed; O is
  // checked on the allowed set those codes give.
  const badCodes = out.hashCodes ? codeProblems(c, inputs, out.hashCodes) : undefined;
  if (badCodes) {
    return { status: "mismatch", errO: NaN, errLse: NaN, tolerance: tol, detail: badCodes };
  }
  // select: the GPU's kept blocks must be the top-n of the float64 importances up to ties
  // (widened with the scores, as O's tolerance is); O is checked on those blocks.
  const badBlocks = out.selectedBlocks &&
    selectionDisagreements(c.pattern, c.shape, inputs.q, inputs.k, out.selectedBlocks, {
      tolerance: tol,
    }).find((d) => d.positions > 0);
  if (badBlocks) {
    const detail = `select branch ${badBlocks.branch}: ${badBlocks.positions} positions keep ` +
      `other blocks than the reference's (${badBlocks.first})`;
    return { status: "mismatch", errO: NaN, errLse: NaN, tolerance: tol, detail };
  }
  const want = reference({
    pattern: c.pattern,
    shape: c.shape,
    ...inputs,
    gates,
    hashCodes: out.hashCodes,
    selectedBlocks: out.selectedBlocks,
  });
  const errO = maxError(out.o, want.o), errLse = maxError(out.lse, want.lse);
  const errGrad = dO ? gradientErrorOf(c, inputs, dO, out.gradients, gates, out) : 0;
  const gradTol = tol * (dtype === "f16" ? 2 : 1);
  const ok = errO <= tol && errLse <= tol && errGrad <= gradTol;
  return {
    status: ok ? "ok" : "mismatch",
    errO,
    errLse,
    tolerance: tol,
    detail: ok ? undefined : `max |O - ref| ${errO}, max |LSE - ref| ${errLse} (tolerance ${tol})` +
      (dO ? `, gradients ${errGrad} of the largest (tolerance ${gradTol})` : ""),
  };
}

/** dO of a case, shaped as O `[B, Hq, N, Dv]`: unit normals from its seed. */
function dOValues(c: FuzzCase): number[] {
  const { batch: B, headsQ: Hq, seqLen: N } = c.shape;
  const next = normals(c.seed ^ 0x2545f491);
  return Array.from({ length: B * Hq * N * sequenceSizes(c.shape).dv }, next);
}

/** Largest |GPU - reference| of the gradients, relative to the largest reference gradient. */
function gradientErrorOf(
  c: FuzzCase,
  inputs: { q: Float32Array; k: Float32Array; v: Float32Array },
  dO: Float32Array,
  got: AttentionGradients | undefined,
  gates: { data: Float32Array; shape: number[] } | undefined,
  chosen: { hashCodes?: HashCodes; selectedBlocks?: SelectedBlocks[] },
): number {
  if (!got) return Infinity;
  // hashBucket codes and select blocks: the allowed set the forward used.
  const want = referenceGradients({
    pattern: c.pattern,
    shape: c.shape,
    ...inputs,
    dO,
    gates,
    hashCodes: chosen.hashCodes,
    selectedBlocks: chosen.selectedBlocks,
  });
  const { worst, largest } = gradientError(got, want);
  const relative = largest === 0 ? worst : worst / largest;
  // Learnable constants' gradients sum over every row: measured against their own largest, or
  // their terms' magnitudes where those cancel.
  const constants = constantGradientError(got.dConstants, want.dConstants, want.dConstantsScale);
  return Math.max(
    relative,
    constants.largest === 0 ? constants.worst : constants.worst / constants.largest,
  );
}

/** A line naming the first bucket codes that contradict a clearly signed projection, if any. */
function codeProblems(
  c: FuzzCase,
  inputs: { q: ArrayLike<number>; k: ArrayLike<number> },
  codes: HashCodes,
): string | undefined {
  const pattern = parsePattern(c.pattern);
  for (const m of hashCodeMismatches(pattern, c.shape, inputs.q, inputs.k, codes)) {
    const bad = m.queries + m.keys;
    if (bad > 0) return `${bad} codes of ${m.key} contradict clearly signed projections`;
  }
  return undefined;
}

/** Largest |a - b|; NaN anywhere, or infinities that disagree, count as Infinity. */
function maxError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) return Infinity;
    if (!Number.isFinite(x) || !Number.isFinite(y)) {
      if (x !== y) return Infinity;
      continue;
    }
    worst = Math.max(worst, Math.abs(x - y));
  }
  return worst;
}

/**
 * Shrinks a failing case: tries smaller variants one at a time and keeps the first that still
 * fails, until none does (or `maxTries` checks).
 * @param rt the runtime
 * @param c a failing case
 * @param maxTries the most cases to check
 * @returns the smallest failing case found
 */
export async function shrinkCase(
  rt: Runtime,
  c: FuzzCase,
  tiles?: { tileQ: number; tileK: number },
  maxTries = 200,
): Promise<FuzzCase> {
  let best = c, tries = 0;
  for (let improved = true; improved && tries < maxTries;) {
    improved = false;
    for (const candidate of smaller(best)) {
      if (++tries > maxTries) break;
      if ((await checkCase(rt, candidate, tiles)).status === "mismatch") {
        best = candidate;
        improved = true;
        break;
      }
    }
  }
  return best;
}

/**
 * A shape with V's head dim set to `dv`: `valueDim` is left out when it equals the head dim, so
 * that a shape square in D is the one drawn without it (the same goldens and pipelines).
 * @param s the shape
 * @param dv Dv
 * @returns the shape with Dv
 */
export function withValueDim(s: AttentionShape, dv: number): AttentionShape {
  const { valueDim: _, ...square } = s;
  return dv === s.headDim ? square : { ...square, valueDim: dv };
}

function* smaller(c: FuzzCase): Generator<FuzzCase> {
  const s = c.shape;
  const shapes: AttentionShape[] = [];
  if (s.batch > 1) shapes.push({ ...s, batch: 1 });
  if (s.headsKV > 1) shapes.push({ ...s, headsKV: 1, headsQ: s.headsQ / s.headsKV });
  if (s.headsQ > s.headsKV) shapes.push({ ...s, headsQ: s.headsKV });
  // D and Dv to 4 each (Dv left out once it equals D, as the fuzzer draws it), or Dv to D.
  if (s.headDim > 4) shapes.push(withValueDim({ ...s, headDim: 4 }, s.valueDim ?? 4));
  if (s.valueDim !== undefined && s.valueDim > 4) shapes.push(withValueDim(s, 4));
  if (s.valueDim !== undefined && s.valueDim > s.headDim) shapes.push(withValueDim(s, s.headDim));
  for (const n of [Math.ceil(s.seqLen / 2), s.seqLen - 1]) {
    if (n >= 1 && n < s.seqLen) shapes.push({ ...s, seqLen: n });
  }
  for (const shape of shapes) {
    const pattern = clampTokens(c.pattern, shape.seqLen);
    if (pattern) yield { ...c, shape, pattern };
  }
  if (c.magnitude !== 1) yield { ...c, magnitude: 1 };
  if (c.runtimeGates) yield { ...c, runtimeGates: false };
  for (const pattern of simpler(c.pattern)) yield { ...c, pattern };
}

/** Each combinator replaced by one of its members, or with one member dropped. */
function* simpler(p: Pattern): Generator<Pattern> {
  if (p.kind === "union" || p.kind === "intersect") {
    yield* p.of;
    if (p.of.length > 1) {
      for (let i = 0; i < p.of.length; i++) yield { ...p, of: p.of.filter((_, j) => j !== i) };
    }
    for (let i = 0; i < p.of.length; i++) {
      for (const child of simpler(p.of[i])) {
        yield { ...p, of: p.of.map((c, j) => j === i ? child : c) };
      }
    }
  } else if (p.kind === "scored") {
    yield p.pattern;
  } else if (p.kind === "gated") {
    yield* p.branches.filter((b) => b.kind !== "gated");
    for (let i = 0; i < p.branches.length; i++) {
      for (const child of simpler(p.branches[i])) {
        yield { ...p, branches: p.branches.map((c, j) => j === i ? child : c) };
      }
    }
  }
}

/** The pattern at a shorter N: global tokens past it dropped (undefined if none would remain). */
function clampTokens(p: Pattern, n: number): Pattern | undefined {
  switch (p.kind) {
    case "global": {
      const tokens = p.tokens.filter((t) => t < n);
      return tokens.length ? { ...p, tokens } : undefined;
    }
    case "union":
    case "intersect": {
      const of = p.of.map((c) => clampTokens(c, n));
      return of.every((c) => c) ? { ...p, of: of as Pattern[] } : undefined;
    }
    case "gated": {
      const branches = p.branches.map((c) => clampTokens(c, n));
      return branches.every((c) => c) ? { ...p, branches: branches as Pattern[] } : undefined;
    }
    case "scored": {
      const inner = clampTokens(p.pattern, n);
      return inner ? { ...p, pattern: inner } : undefined;
    }
    default:
      return p;
  }
}
