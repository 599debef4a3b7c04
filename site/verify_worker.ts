/**
 * The playground's verifier, a web worker: the float64 reference of one run, compared with
 * what the GPU returned, off the page's thread (the reference is O(N²·D) on one core). It
 * loads the predicate parser itself when the pattern holds TypeScript source.
 * @module
 */
import { loadExpressionParser } from "../dsl/expression_syntax.ts";
import type { Pattern } from "../dsl/schema.ts";
import type { HashCodes } from "../dsl/hash_bucket.ts";
import type { AttentionShape } from "../core/shape.ts";
import { hashCodeMismatches, reference } from "../runtime/reference/mod.ts";
import { maxAbsError, maxLseError } from "../cli/_report.ts";

/** What the page sends: one run's inputs and outputs. */
export interface VerifyRequest {
  pattern: Pattern;
  shape: AttentionShape;
  /** Whether the pattern holds TypeScript source (the parser must load first). */
  source: boolean;
  /** The inputs the GPU read, as float32 (float16 calls: their float16 values). */
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** The score scale the kernels used. */
  scale: number;
  /** The GPU's outputs (O widened to float32). */
  o: Float32Array;
  lse: Float32Array;
  /** The GPU's hashBucket codes, which the reference uses for the allowed sets. */
  hashCodes?: HashCodes;
}

/** What the worker answers. */
export type VerifyReply =
  | {
    ok: true;
    /** max |O - O_ref| */
    errorO: number;
    /** max |LSE - LSE_ref| / max(1, |LSE_ref|) */
    errorLse: number;
    /** Bucket codes that disagree with a clearly signed float64 projection (should be 0). */
    badCodes: number;
    /** Milliseconds the reference took. */
    ms: number;
  }
  | { ok: false; error: string };

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<VerifyRequest>) => void) | null;
  postMessage(reply: VerifyReply): void;
};

scope.onmessage = async ({ data: r }) => {
  try {
    if (r.source) await loadExpressionParser();
    const started = performance.now();
    let badCodes = 0;
    if (r.hashCodes) {
      for (const m of hashCodeMismatches(r.pattern, r.shape, r.q, r.k, r.hashCodes)) {
        badCodes += m.queries + m.keys;
      }
    }
    const { pattern, shape, q, k, v, scale, hashCodes } = r;
    const expected = reference({ pattern, shape, q, k, v, scale, hashCodes });
    scope.postMessage({
      ok: true,
      errorO: maxAbsError(r.o, expected.o),
      errorLse: maxLseError(r.lse, expected.lse),
      badCodes,
      ms: performance.now() - started,
    });
  } catch (e) {
    scope.postMessage({ ok: false, error: `${(e as Error).name}: ${(e as Error).message}` });
  }
};
