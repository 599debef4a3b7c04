/**
 * The end of an attention kernel: each row normalised once, then written, or merged exactly
 * (by log-sum-exp) into what earlier components of the branch wrote.
 * @module
 */
import type { ComponentKernelOptions } from "./attention_wgsl.ts";
import { type MemberRefs, queryRowOf, valueWidth } from "./kernel_refs.ts";

/** Merging kernels read what earlier components wrote to each row's LSE before the barrier. */
export function earlierLse(o: ComponentKernelOptions, refs: MemberRefs, R: number[]): string {
  const read = (r: number) => `lseOut[${refs.lseBase} + ${queryRowOf(o, `q${r}`, true)}]`;
  if (refs.output === "write") return "";
  if (refs.output === "merge") return R.map((r) => `  let earlier${r} = ${read(r)};`).join("\n");
  return `${R.map((r) => `  var earlier${r} = 0.0;`).join("\n")}
  if (MERGE) {
${R.map((r) => `    earlier${r} = ${read(r)};`).join("\n")}
  }`;
}

/** Row r's output: normalise once; write, or merge exactly with earlier components by LSE. */
export function epilogue(
  o: ComponentKernelOptions,
  refs: MemberRefs,
  r: number,
  Dd: number[],
  cols: number,
): string {
  const at = (d: number) => `outBase + col + ${d * cols}u`;
  // A split-K chunk writes its partial row, normalised by its own sum, to the split buffers:
  // the combine pass weighs the chunks. Otherwise the row is the query's own.
  const splitRow = `row = (split * BH + bh) * splitRows + qTileIndex * TILE_Q + firstRow + ${r}u;`;
  const ownRow = `row = ${refs.lseBase} + ${queryRowOf(o, `q${r}`)};`;
  const width = valueWidth(o); // O's rows
  const ownOut = `outBase = ${refs.oBase} + (${queryRowOf(o, `q${r}`)}) * ${width};`;
  const rowAt = refs.split === "split"
    ? `let ${splitRow}
    let outBase = row * ${width};`
    : refs.split === "none"
    ? `let ${ownRow}
    let ${ownOut}`
    : `var ${ownRow}
    var ${ownOut}
    if (SPLIT) {                      // a chunk's partial row, for the combine pass
      ${splitRow}
      outBase = row * ${width};
    }`;
  const head = `  if (q${r} >= 0) {
    var total = 0.0;
    for (var c = 0u; c < COLS; c++) { total += rowShare[(firstRow + ${r}u) * COLS + c]; }
    ${rowAt}`;
  const out = o.outputF16 ? "f16" : "f32";
  const cast = (x: string) => o.outputF16 ? `vec4<f16>(${x})` : x;
  const write = (indent: string) =>
    `${indent}if (total == 0.0) {               // nothing allowed: O = 0, LSE = -inf
${indent}  if (col == 0u) { lseOut[row] = negativeInfinity(); }
${Dd.map((d) => `${indent}  oOut[${at(d)}] = vec4<${out}>(0.0);`).join("\n")}
${indent}} else {
${indent}  if (col == 0u) { lseOut[row] = (rowMax${r} + log2(total)) * LN2; }
${Dd.map((d) => `${indent}  oOut[${at(d)}] = ${cast(`acc${r}_${d} / total`)};`).join("\n")}
${indent}}`;
  // lse = logaddexp(earlier, own); O = e^(earlier - lse) O_earlier + e^(own - lse) O_own.
  const merge = (indent: string) =>
    `${indent}if (total > 0.0) {                // else keep what earlier components wrote
${indent}  let lse = (rowMax${r} + log2(total)) * LN2;
${indent}  let merged = max(earlier${r}, lse) + log(1.0 + exp(-abs(earlier${r} - lse)));
${indent}  let wEarlier = exp(earlier${r} - merged); // 0 when earlier components allowed nothing (-inf)
${indent}  let wOwn = exp(lse - merged) / total;
${
      Dd.map((d) => `${indent}  oOut[${at(d)}] = wEarlier * oOut[${at(d)}] + wOwn * acc${r}_${d};`)
        .join("\n")
    }
${indent}  if (col == 0u) { lseOut[row] = merged; }
${indent}}`;
  const body = refs.output === "write"
    ? write("    ")
    : refs.output === "merge"
    ? merge("    ")
    : `    if (MERGE) {\n${merge("      ")}\n    } else {\n${write("      ")}\n    }`;
  return `${head}\n${body}\n  }`;
}
