/**
 * Shape-time checks of predicates and score modifiers, so that the kernel (i32 and f32 WGSL)
 * and the reference (float64 JavaScript) compute the same thing: over every position, head and
 * batch of the call, each integer subexpression must stay inside i32, no divisor may be 0, no
 * index may leave its array, and `Math.log`, `Math.sqrt` and a non-integer `Math.pow` must get
 * arguments WGSL defines them for. Interval analysis over the whole domain decides it; an
 * expression it cannot prove safe is refused with its line, even if a guard elsewhere would
 * have kept it safe (write `q % (k + 1)` rather than `k > 0 && q % k == 0`).
 * @module
 */
import { PlanError } from "../core/errors.ts";
import type { Program } from "./expression.ts";
import { predicateProgram, scoreProgram } from "./expression_check.ts";
import type { Pattern } from "./schema.ts";
import { type Box, integerPower, type Interval, programInterval } from "./expression_intervals.ts";

/** The sizes a pattern's expressions run over. */
export interface ExpressionDomain {
  n: number;
  batch: number;
  headsQ: number;
}

const I32_MAX = 0x7fffffff;

/**
 * Checks every predicate and score of a pattern over the whole domain of one call shape.
 * @param pattern a parsed pattern
 * @param domain N, the batch and the query heads
 * @throws {PlanError} "Cannot plan pattern: pattern.expr: line 1: q * k may leave the i32 range..."
 * @example
 * ```ts
 * import { checkExpressionDomain } from "./expression_domain.ts";
 * checkExpressionDomain({ kind: "predicate", expr: "q * k < 100" }, { n: 1024, batch: 1, headsQ: 8 }); // fine
 * // At n = 65536, q * k reaches 4294836225: PlanError.
 * ```
 */
export function checkExpressionDomain(pattern: Pattern, domain: ExpressionDomain): void {
  visit(pattern, "pattern", domain);
}

function visit(p: Pattern, where: string, domain: ExpressionDomain): void {
  switch (p.kind) {
    case "predicate":
      return checkProgram(predicateProgram(p, `${where}.expr`), `${where}.expr`, domain);
    case "scored":
      checkProgram(scoreProgram(p.score, `${where}.score.expr`), `${where}.score.expr`, domain);
      return visit(p.pattern, `${where}.pattern`, domain);
    case "gated":
      return p.branches.forEach((b, i) => visit(b, `${where}.branches[${i}]`, domain));
    case "union":
    case "intersect":
      return p.of.forEach((c, i) => visit(c, `${where}.of[${i}]`, domain));
    default:
      return;
  }
}

/**
 * The box of every input over a whole call: positions `[0, N-1]`, heads, batches, any score.
 * @param domain the call's sizes
 * @returns the box
 * @example
 * ```ts
 * import { domainBox } from "./expression_domain.ts";
 * domainBox({ n: 128, batch: 2, headsQ: 4 }).h; // { lo: 0, hi: 3 }
 * ```
 */
export function domainBox(domain: ExpressionDomain): Box {
  const upTo = (x: number) => ({ lo: 0, hi: Math.max(0, x - 1) });
  return {
    q: upTo(domain.n),
    k: upTo(domain.n),
    n: domain.n,
    h: upTo(domain.headsQ),
    b: upTo(domain.batch),
    s: { lo: -Infinity, hi: Infinity },
  };
}

function checkProgram(program: Program, where: string, domain: ExpressionDomain): void {
  const shape = `at N=${domain.n}, B=${domain.batch}, Hq=${domain.headsQ}`;
  const range = (i: Interval) => `[${i.lo}, ${i.hi}]`;
  programInterval(program, domainBox(domain), (e, value, operands, { program: within, mask }) => {
    const fail = (problem: string): never => {
      throw new PlanError(
        `Cannot plan pattern: ${where}: ${mask ? `mask ${mask}: ` : ""}line ${e.origin.line}: ` +
          `${e.origin.text} ${problem} ${shape}`,
      );
    };
    if (e.type === "int" && (value.lo < -I32_MAX || value.hi > I32_MAX)) {
      fail(`may leave the i32 range the kernels compute in (its range is ${range(value)})`);
    }
    if (e.op === "binary" && (e.fn === "mod" || e.fn === "floorDiv" || e.fn === "/")) {
      const d = operands[1];
      if (d.lo <= 0 && d.hi >= 0) fail(`may divide by 0 (the divisor's range is ${range(d)})`);
    }
    if (e.op === "element") {
      const size = within.arrays[e.array].values.length, i = operands[0];
      if (i.lo < 0 || i.hi > size - 1) {
        fail(`may index outside ${e.array} (${size} entries; the index's range is ${range(i)})`);
      }
    }
    if (e.op === "math") {
      const a = operands[0];
      if (e.fn === "log" && a.lo <= 0) fail(`needs a positive argument (its range is ${range(a)})`);
      if (e.fn === "sqrt" && a.lo < 0) fail(`needs an argument >= 0 (its range is ${range(a)})`);
      if (e.fn === "pow" && !(e.args[1].op === "literal" && integerPower(e.args[1].value))) {
        if (a.lo <= 0) {
          fail(
            `needs a positive base, or an integer exponent 0..16 (the base's range is ${range(a)})`,
          );
        }
      }
    }
  });
}
