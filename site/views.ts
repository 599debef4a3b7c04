/**
 * What the playground shows of a compiled pattern, with `explain`'s own code: the plan summary,
 * the kernel plan, each branch's density, the mask picture (drawn on a canvas from the same
 * raster `explain --png` writes) and the WGSL of every pass.
 * @module
 */
/// <reference lib="dom" />
import { type CompiledAttention, kernelPlanText, planSummary } from "../compiler/mod.ts";
import { hashBucketsOf } from "../dsl/hash_bucket.ts";
import { branchMasks } from "../cli/_mask_picture.ts";
import { type MaskImage, maskImage } from "../cli/_mask_image.ts";
import { allWgsl, componentLabels, densityLine, hashDensityLine } from "../cli/_explain_text.ts";

/** The text and picture of one compiled pattern. */
export interface CompiledView {
  /** `planSummary`: components, layouts, tiles visited. */
  plan: string;
  /** `kernelPlanText`: every dispatch, its variant, bindings and workgroups. */
  kernelPlan: string;
  /** One density line per branch, or why there is none (hashBucket). */
  density: string[];
  /** The mask picture with its legend; absent where the allowed set depends on Q and K. */
  image?: MaskImage;
  /** Every pass's WGSL in dispatch order. */
  wgsl: string;
}

/**
 * Everything the page shows of a compiled pattern, without a GPU.
 * @param compiled the pattern compiled at the page's shape
 * @returns its texts and picture
 */
export function viewOf(compiled: CompiledAttention): CompiledView {
  const { plan } = compiled;
  const view = {
    plan: planSummary(plan),
    kernelPlan: kernelPlanText(compiled.kernelPlan, compiled.buffers, compiled.shape.headDim),
    wgsl: allWgsl(compiled),
  };
  const hashed = hashBucketsOf(plan.pattern);
  if (hashed.length > 0) {
    return {
      ...view,
      density: [
        ...hashed.map(hashDensityLine),
        "no mask picture: the allowed set is known only once the GPU has hashed Q and K",
      ],
    };
  }
  const labels = plan.branches.map((b, i) =>
    compiled.branches > 1 ? `branch ${i}: ${b.label}` : b.label
  );
  return {
    ...view,
    density: branchMasks(plan).map((m, i) => `${labels[i]}: ${densityLine(m, plan.n)}`),
    image: maskImage(plan, componentLabels(compiled)),
  };
}

/**
 * Paints an RGB raster on a canvas, at its own size.
 * @param canvas the canvas
 * @param image width, height and RGB bytes
 */
export function paint(canvas: HTMLCanvasElement, image: MaskImage): void {
  canvas.width = image.width;
  canvas.height = image.height;
  const rgba = new ImageData(image.width, image.height);
  for (let i = 0, j = 0; i < image.rgb.length; i += 3, j += 4) {
    rgba.data[j] = image.rgb[i];
    rgba.data[j + 1] = image.rgb[i + 1];
    rgba.data[j + 2] = image.rgb[i + 2];
    rgba.data[j + 3] = 255;
  }
  canvas.getContext("2d")!.putImageData(rgba, 0, 0);
}
