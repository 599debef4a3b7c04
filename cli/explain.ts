/**
 * `deno task explain`: what a pattern compiles to at one sequence length, without a GPU.
 *
 * ```sh
 * deno task explain P --seq-len N [--head-dim D] [--tiles QxK] [--wgsl out.wgsl] [--all-wgsl]
 *   [--svg mask.svg] [--png mask.png] [--no-picture]
 * ```
 *
 * Prints the pattern's JSON, the plan (branches, components, layouts, tiles visited of the dense
 * count, partial tiles), the kernel plan (every dispatch with its variants, module, bindings and
 * workgroups, then the buffer table), each branch's density (allowed pairs over N²) and how much of
 * the visited tile area is allowed, a picture of the mask (element-level up to N = 64, else at most
 * 64x64 cells), then the WGSL of the first pass (`--all-wgsl`: every pass; `--wgsl FILE`: every
 * pass to a file instead). `--png` draws every component in its own colour (tile level past N =
 * 512, with element-level zooms of two corners). The reach is how many attention hops until every
 * position has heard from every other. All of it comes from the tile schedule, so N = 65536 takes
 * as long as the compiler does, never N² work.
 *
 * N goes up to what the compiler can dispatch: one workgroup per query tile, at most 65535, so
 * N <= 65535 x the query tile (2,097,120 at the default 32; `--tiles 256xK`: 16,776,960). Past
 * it explain refuses at once, naming the largest N, rather than plan (the plan's memory grows
 * with N: at N = 2^31 - 1 V8 ran out of memory). Up to it memory stays bounded; the density,
 * pictures and reach walk every visited tile, which for a dense pattern near the limit takes
 * minutes: explain says so on stderr first, and `--no-picture` skips them.
 * @module
 */
import { compile, type CompiledAttention } from "../compiler/mod.ts";
import { kernelPlanText, MAX_WORKGROUPS_X, planSummary } from "../compiler/mod.ts";
import {
  adapterLine,
  checkDtype,
  formatMs,
  integerFlag,
  loadPattern,
  parseFlags,
  required,
  runMain,
  UsageError,
} from "./_common.ts";
import { branchMasks, maskSvg, pictureWork, renderMask } from "./_mask_picture.ts";
import { maskImage } from "./_mask_image.ts";
import { encodePng } from "./_png.ts";
import { reach, strideClasses } from "./_reach.ts";
import { allWgsl, componentLabels, densityLine, hashDensityLine } from "./_explain_text.ts";
import { hashBucketsOf } from "../dsl/hash_bucket.ts";
import { selectionLines } from "./_select_picture.ts";
import { createRuntime } from "../runtime/runtime.ts";
import { resolveBackend } from "../runtime/device.ts";

const USAGE = `Usage: deno task explain P --seq-len N [--head-dim D] [--tiles QxK] [--wgsl out.wgsl]
       [--all-wgsl] [--svg mask.svg] [--png mask.png] [--no-picture] [--dtype T] [--backend B]

  P              a JSON file, JSON text, or an example's name (e.g. pi_attention)
  --seq-len N    sequence length
  --head-dim D   head dim (default 64; sizes the tiles and specialises the WGSL)
  --tiles QxK    override the tile shape (default: sized for WebGPU's default limits)
  --dtype T      f32 (default) or f16
  --backend B    compile for this WebGPU implementation's device (native or dawn): its limits,
                 and on dawn its subgroup matrices (default: no device, WebGPU's default limits)
  --wgsl FILE    write the WGSL of every pass to FILE instead of printing the first
  --all-wgsl     print the WGSL of every pass
  --svg FILE     write the mask picture as SVG
  --png FILE     write the mask picture as PNG, each component in its own colour
  --no-picture   skip the density, mask pictures and reach (they walk every visited tile:
                 minutes for a dense pattern at N in the millions)

N is at most 65535 query tiles (WebGPU's workgroups per dimension): 2097120 at the default
tiles, up to 16776960 with --tiles 256xK.`;

const FLAGS = {
  pattern: { type: "string" },
  "seq-len": { type: "string" },
  "head-dim": { type: "string" },
  tiles: { type: "string" },
  wgsl: { type: "string" },
  "all-wgsl": { type: "boolean" },
  svg: { type: "string" },
  png: { type: "string" },
  "no-picture": { type: "boolean" },
  dtype: { type: "string" },
  backend: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * The tool: compile for one shape (B = H = 1) and print what the plan does.
 *
 * @param args the command line
 * @returns the exit status
 * @throws {UsageError|PatternError|ShapeError|PlanError} bad input
 * @example
 * ```ts ignore
 * import { main } from "./explain.ts";
 * await main(["stride_16.json", "--seq-len", "4096"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS, true);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 1 || (positionals.length === 1 && values.pattern !== undefined)) {
    throw new UsageError(
      `expected one pattern, got ${[...positionals, values.pattern].filter(Boolean).join(", ")}`,
    );
  }
  const spec = required(
    positionals[0] ?? values.pattern,
    "pattern",
    "the pattern, or first argument",
  );
  const seqLen = integerFlag(required(values["seq-len"], "seq-len", "N"), "seq-len", { min: 1 })!;
  const headDim = integerFlag(values["head-dim"], "head-dim", { min: 4, max: 256, fallback: 64 })!;
  const tiles = parseTiles(values.tiles);
  const picture = values.svg !== undefined ? "--svg" : values.png !== undefined ? "--png" : "";
  if (values["no-picture"] && picture) {
    throw new UsageError(`--no-picture skips the picture that ${picture} would write`);
  }
  const dtype = checkDtype(values.dtype);
  const backend = values.backend === undefined ? undefined : resolveBackend(values.backend);
  const pattern = await loadPattern(spec);
  checkSeqLen(seqLen, headDim, tiles);

  const shape = { batch: 1, headsQ: 1, headsKV: 1, seqLen, headDim };
  let compiled;
  let sized = "sized for WebGPU's default limits";
  if (backend) {
    // The device only lends its limits and matrices: nothing runs on it.
    const rt = await createRuntime({ backend, autotune: false });
    try {
      console.log(adapterLine(rt.info));
      compiled = rt.compile(pattern, { shape, dtype, tiles });
      sized = `sized for this device${compiled.kernel.matrix ? ", on subgroup matrices" : ""}`;
    } finally {
      rt.destroy();
    }
  } else {
    compiled = compile(pattern, { shape, dtype, tiles });
  }
  console.log(`pattern: ${JSON.stringify(pattern)}`);
  console.log(
    `shape: N=${seqLen}, D=${headDim} (B=1, H=1), ${dtype}; tiles ${compiled.plan.tiles.tileQ}x` +
      `${compiled.plan.tiles.tileK}${tiles ? " (given)" : ` (${sized})`}`,
  );
  console.log(`compile: ${formatMs(compiled.compileMs)}`);
  console.log("\nplan:");
  console.log(indent(planSummary(compiled.plan)));
  compiled.edgePairs.forEach((branch, b) =>
    branch.forEach((pairs, j) => {
      if (pairs === 0) return;
      const qTiles = compiled.plan.branches[b].components[j].mask.qTiles;
      console.log(
        `  branch ${b} component ${j}: ${pairs} of ${qTiles} query tiles walk an edge pair ` +
          `(two corner tiles in one step: ${pairs} steps fewer)`,
      );
    })
  );
  console.log(
    `\n${kernelPlanText(compiled.kernelPlan, compiled.buffers, compiled.shape.headDim)}`,
  );

  const hashed = hashBucketsOf(compiled.plan.pattern);
  if (hashed.length > 0) {
    // The allowed set depends on Q and K: nothing here may pretend to know it.
    console.log(
      "\ndensity: depends on Q and K (hashBucket); for independent, evenly spread codes:",
    );
    for (const h of hashed) console.log(`  ${hashDensityLine(h)}`);
    console.log(
      "mask, pictures and reach: not drawn, since the allowed set is known only once the GPU " +
        "has hashed Q and K (`Runtime.run` returns the codes)",
    );
  } else if (values["no-picture"]) {
    console.log("\ndensity, mask pictures and reach: skipped (--no-picture)");
  } else {
    const work = pictureWork(compiled.plan);
    if (work.tiles + work.pairs > SLOW_PICTURE_WORK) {
      console.error(
        `note: the density, mask pictures and reach walk ${work.tiles} visited tiles and test ` +
          `${work.pairs} pairs of partial ones, each a few times: this takes minutes ` +
          `(--no-picture skips them)`,
      );
    }
    const started = performance.now();
    const masks = branchMasks(compiled.plan);
    const labels = compiled.plan.branches.map((b, i) =>
      compiled.branches > 1 ? `branch ${i}: ${b.label}` : b.label
    );
    console.log(`\ndensity (allowed (q, k) pairs of N² = ${seqLen * seqLen}):`);
    masks.forEach((m, i) => {
      const linear = compiled.plan.branches[i].linear;
      if (linear) {
        // Linear attention sums over its keys without tiles: nothing is skipped or pictured.
        const share = linear.causal ? "keys k <= q, about half of N²" : "every key, all of N²";
        console.log(`  ${labels[i]}: not a softmax; sums over ${share}, in time linear in N`);
        return;
      }
      const select = compiled.plan.branches[i].select?.select;
      if (select) {
        // Its allowed set depends on Q and K: its bound, and below a drawing on seeded inputs.
        const most = Math.min(seqLen, select.blocks * select.blockSize);
        console.log(
          `  ${labels[i]}: depends on Q and K (select): at most ${select.blocks} blocks of ` +
            `${select.blockSize} = ${most} keys per query (${(100 * most / seqLen).toFixed(2)}% ` +
            `of N)`,
        );
        return;
      }
      console.log(`  ${labels[i]}: ${densityLine(m, seqLen)}`);
      // lowRank landmarks are keys of their own: counted here, not in the pairs or the picture.
      for (const c of compiled.plan.branches[i].components) {
        if (c.kLayout.kind !== "landmarks") continue;
        const causal = c.atoms.some((a) => a.kind === "causal");
        console.log(
          `    plus ${c.kLayout.count} pooled landmarks of lowRank(${c.kLayout.rank}) ` +
            `(${c.kLayout.segment} positions each) per query${
              causal ? ", once their segment has ended" : ""
            }`,
        );
      }
    });
    console.log(`  (measured from the tile schedule in ${formatMs(performance.now() - started)})`);

    masks.forEach((m, i) => {
      if (compiled.plan.branches[i].linear) return;
      const select = compiled.plan.branches[i].select;
      if (select) {
        console.log(`\nselection of ${labels[i]}:`);
        console.log(indent(selectionLines(select, { seqLen, headDim }).join("\n")));
        return;
      }
      const scale = m.cellSize === 1
        ? "element-level"
        : `tile-level: a cell is ${m.cellSize}x${m.cellSize} positions`;
      console.log(
        `\nmask of ${labels[i]} (${scale}; rows are queries, columns keys; █ some pair allowed, ` +
          `░ none):`,
      );
      console.log(renderMask(m));
    });
    if (values.svg !== undefined) {
      await writeText(values.svg, "svg", maskSvg(masks, labels));
      console.log(`\nwrote the mask picture to ${values.svg}`);
    }
    if (values.png !== undefined) {
      const drawn = performance.now();
      const image = maskImage(compiled.plan, componentLabels(compiled));
      await writeFile(values.png, "png", encodePng(image));
      console.log(
        `\nwrote the ${image.width}x${image.height} mask picture to ${values.png} in ` +
          `${formatMs(performance.now() - drawn)}; one row of panels per branch`,
      );
      for (const line of image.panels) console.log(`  ${line}`);
      for (const { label, colour } of image.legend) console.log(`  ${colour} ${label}`);
    }

    if (compiled.plan.branches.some((b) => b.linear)) {
      console.log("\nreach: not measured, since a linear branch has no tile schedule to walk");
    } else if (compiled.plan.branches.some((b) => b.select)) {
      console.log("\nreach: not computed, since a select's allowed set depends on Q and K");
    } else {
      printReach(compiled.plan);
    }
  }

  if (values.wgsl !== undefined) {
    await writeText(values.wgsl, "wgsl", allWgsl(compiled));
    console.log(`wrote the WGSL of ${compiled.passes.length} pass(es) to ${values.wgsl}`);
  } else if (values["all-wgsl"]) {
    console.log(`\n${allWgsl(compiled)}`);
  } else {
    const first = compiled.passes[0];
    if (first) {
      console.log(
        `\nWGSL of ${first.label} (--all-wgsl prints every pass, --wgsl FILE writes them):\n`,
      );
      console.log(first.wgsl);
    }
  }
  return 0;
}

/** How many attention hops until every position has heard from every other. */
function printReach(plan: CompiledAttention["plan"]): void {
  const searched = performance.now();
  const r = reach(plan);
  const scope = r.cellSize === 1 ? "exact" : `on cells of ${r.cellSize} positions, a lower bound`;
  console.log(
    `\nreach (${scope}; ${formatMs(performance.now() - searched)}): ` +
      (r.hops !== undefined
        ? `every position hears from every other within ${r.hops} attention hop(s)`
        : `never: ${r.unreachable} of ${r.nodes * r.nodes} ordered pairs of ${r.nodes} nodes ` +
          `stay apart however many layers are stacked`),
  );
  for (const line of strideClasses(plan)) console.log(`  ${line}`);
}

/** Tile visits plus partial pairs past which the picture part warns it will take minutes. */
const SLOW_PICTURE_WORK = 2 ** 28;

/**
 * Refuses an N no plan can dispatch (more than 65535 query tiles, one workgroup each) as a
 * usage error naming the flag, before anything is compiled.
 */
function checkSeqLen(
  seqLen: number,
  headDim: number,
  tiles: { tileQ: number } | undefined,
): void {
  // The tile shape compile will pick: it depends on D and the limits, not on the pattern or N.
  const tileQ = tiles?.tileQ ?? compile({ kind: "dense" }, {
    shape: { batch: 1, headsQ: 1, headsKV: 1, seqLen: 1, headDim },
  }).kernel.tileQ;
  const max = MAX_WORKGROUPS_X * tileQ;
  if (seqLen <= max) return;
  const more = tileQ < 256
    ? `; a larger query tile allows more (--tiles 256xK: up to ${MAX_WORKGROUPS_X * 256})`
    : "";
  throw new UsageError(
    `--seq-len ${seqLen} is past what explain can compile and draw: at most ${max} with ` +
      `query tiles of ${tileQ} (${MAX_WORKGROUPS_X} query tiles, WebGPU's workgroups per ` +
      `dimension)${more}`,
  );
}

function parseTiles(text: string | undefined): { tileQ: number; tileK: number } | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+)x(\d+)$/.exec(text.trim());
  const [tileQ, tileK] = match ? [Number(match[1]), Number(match[2])] : [0, 0];
  if (!match || tileQ < 1 || tileK < 1 || tileQ > 256 || tileK > 256) {
    throw new UsageError(`--tiles must be QxK with Q and K in [1, 256] (e.g. 64x32), got ${text}`);
  }
  return { tileQ, tileK };
}

async function writeText(path: string, flag: string, text: string): Promise<void> {
  await writeFile(path, flag, new TextEncoder().encode(text));
}

async function writeFile(path: string, flag: string, bytes: Uint8Array): Promise<void> {
  try {
    await Deno.writeFile(path, bytes);
  } catch (error) {
    throw new UsageError(`--${flag} ${path}: cannot write: ${(error as Error).message}`);
  }
}

function indent(text: string): string {
  return text.split("\n").map((l) => `  ${l}`).join("\n");
}

if (import.meta.main) await runMain(() => main(Deno.args));
