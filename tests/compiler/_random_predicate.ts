/**
 * Random predicate sources for property tests: integer expressions over q, k, n (and h, b)
 * with +, -, constant *, %, Math.floor(a / c), abs, min, max and ?:, compared and combined
 * with && || !. Magnitudes stay far inside i32 for N up to a few thousand.
 */

/** A random predicate's source text (a bare expression). */
export function randomPredicate(rand: () => number, options: { headBatch?: boolean } = {}) {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: T[]) => xs[int(0, xs.length - 1)];
  const nonZero = () => pick([-7, -3, -2, 2, 3, 4, 5, 8, 16, 17]);
  const vars = options.headBatch ? ["q", "k", "n", "h", "b"] : ["q", "k", "q", "k", "n"];
  const num = (depth: number): string => {
    const r = depth <= 0 ? int(0, 1) : int(0, 11);
    switch (r) {
      case 0:
        return pick(vars);
      case 1:
        return `${int(-9, 9)}`;
      case 2:
        return `(${num(depth - 1)} + ${num(depth - 1)})`;
      case 3:
        return `(${num(depth - 1)} - ${num(depth - 1)})`;
      case 4:
        return `(${num(depth - 1)} * ${int(-3, 3)})`;
      case 5:
        return `(${num(depth - 1)} % ${nonZero()})`;
      case 6:
        return `Math.floor(${num(depth - 1)} / ${nonZero()})`;
      case 7:
        return `Math.abs(${num(depth - 1)})`;
      case 8:
        return `Math.${pick(["min", "max"])}(${num(depth - 1)}, ${num(depth - 1)})`;
      case 9:
        return `(${bool(depth - 1)} ? ${num(depth - 1)} : ${num(depth - 1)})`;
      case 10:
        return `((q - k) % ${nonZero()})`;
      default:
        return `(q - k)`;
    }
  };
  const bool = (depth: number): string => {
    const r = depth <= 0 ? 0 : int(0, 5);
    switch (r) {
      case 0:
      case 1:
      case 2:
        return `${num(depth - 1)} ${pick(["<", "<=", ">", ">=", "==", "!="])} ${num(depth - 1)}`;
      case 3:
        return `(${bool(depth - 1)} && ${bool(depth - 1)})`;
      case 4:
        return `(${bool(depth - 1)} || ${bool(depth - 1)})`;
      default:
        return `!(${bool(depth - 1)})`;
    }
  };
  return bool(int(1, 4));
}
