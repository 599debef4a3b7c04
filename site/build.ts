/**
 * `deno task site`: bundles the playground into a static folder with esbuild, prints what
 * each file weighs, and with `--serve` serves it.
 *
 * ```sh
 * deno task site                    # build into site/dist/
 * deno task site --serve            # build, then serve on http://127.0.0.1:8000/
 * deno task site --out DIR --port P
 * ```
 *
 * Two entry points, the page (`main.js`) and the verifying worker (`verify_worker.js`), share
 * chunks; ts-morph, which predicates are parsed with, is a chunk of its own that only a
 * dynamic import loads (`loadExpressionParser`), so a page without a predicate never fetches
 * it. WebGPU needs a secure context: `localhost`/`127.0.0.1` counts, a LAN address does not.
 * @module
 */
import * as esbuild from "esbuild";
import { gzipSync } from "node:zlib";
import { extname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { linkNpmPackages } from "./_npm_packages.ts";

const SITE = fileURLToPath(new URL(".", import.meta.url));
const ROOT = join(SITE, "..");
/** Copied as they are. */
const STATIC_FILES = ["index.html", "style.css"];

/** One file of the built site. */
export interface BundleFile {
  /** Its path inside the output folder. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** Its size gzipped (level 9), as a server would send it compressed. */
  gzip: number;
  /**
   * `initial`: what the page loads before anything is typed (HTML, CSS, main.js and the chunks
   * it imports statically); `worker`: the verifier and its chunks, loaded with the page;
   * `ts-morph`: the parser's chunk, loaded on the first predicate; `lazy`: other dynamic chunks.
   */
  role: "initial" | "worker" | "ts-morph" | "lazy";
}

/** What a build wrote. */
export interface Bundle {
  /** The output folder. */
  outDir: string;
  /** Every file, largest first. */
  files: BundleFile[];
  /** Milliseconds the build took. */
  ms: number;
}

/**
 * Builds the site into `outDir` (emptied first).
 * @param outDir the output folder (default site/dist)
 * @returns the files written, with their sizes and roles
 */
export async function buildSite(outDir = join(SITE, "dist")): Promise<Bundle> {
  const started = performance.now();
  await Deno.remove(outDir, { recursive: true }).catch(() => {});
  await Deno.mkdir(outDir, { recursive: true });
  const links = await Deno.makeTempDir({ prefix: "weft_site_" });
  let result: esbuild.BuildResult<{ metafile: true }>;
  try {
    result = await esbuild.build({
      entryPoints: [join(SITE, "main.ts"), join(SITE, "verify_worker.ts")],
      outdir: outDir,
      absWorkingDir: ROOT,
      entryNames: "[name]",
      chunkNames: "chunks/[name]-[hash]",
      bundle: true,
      splitting: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      minify: true,
      metafile: true,
      nodePaths: [await linkNpmPackages(join(ROOT, "deno.lock"), links)],
      // Dawn for Deno (runtime/device.ts loads it only under Deno, on request).
      external: ["webgpu"],
      logLevel: "warning",
    });
  } finally {
    await esbuild.stop();
    await Deno.remove(links, { recursive: true });
  }
  for (const name of STATIC_FILES) await Deno.copyFile(join(SITE, name), join(outDir, name));
  return {
    outDir,
    files: await describe(outDir, result.metafile),
    ms: performance.now() - started,
  };
}

/** Every output's size and role, from esbuild's metafile. */
async function describe(outDir: string, meta: esbuild.Metafile): Promise<BundleFile[]> {
  // The metafile's paths are relative to esbuild's working directory, the repository root.
  const local = (path: string) => relative(outDir, join(ROOT, path));
  const byLocal = new Map([...Object.entries(meta.outputs)].map(([p, o]) => [local(p), o]));
  const roles = new Map<string, BundleFile["role"]>();
  const follow = (path: string, role: BundleFile["role"]) => {
    if (roles.has(path)) return;
    roles.set(path, role);
    for (const i of byLocal.get(path)?.imports ?? []) {
      if (i.kind === "import-statement" && !i.external) follow(local(i.path), role);
    }
  };
  follow("main.js", "initial");
  follow("verify_worker.js", "worker");
  for (const [path, o] of byLocal) {
    if (roles.has(path) || path.endsWith(".map")) continue;
    const morph = Object.keys(o.inputs).some((i) => /[/\\](ts-morph|@ts-morph)[/\\]/.test(i));
    roles.set(path, morph ? "ts-morph" : "lazy");
  }
  for (const name of STATIC_FILES) roles.set(name, "initial");
  const files: BundleFile[] = [];
  for (const [path, role] of roles) {
    const bytes = await Deno.readFile(join(outDir, path));
    files.push({ path, bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length, role });
  }
  return files.sort((a, b) => b.bytes - a.bytes);
}

/**
 * The build's sizes as a table, with a total per role.
 * @param bundle a build
 * @returns lines of text
 */
export function bundleTable(bundle: Bundle): string {
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`.padStart(11);
  const lines = bundle.files.map((f) =>
    `${f.role.padEnd(9)} ${kb(f.bytes)} ${kb(f.gzip)} gzip  ${f.path}`
  );
  const totals = (["initial", "worker", "ts-morph", "lazy"] as const).map((role) => {
    const of = bundle.files.filter((f) => f.role === role);
    const sum = (k: "bytes" | "gzip") => of.reduce((s, f) => s + f[k], 0);
    return of.length ? `${role.padEnd(9)} ${kb(sum("bytes"))} ${kb(sum("gzip"))} gzip  total` : "";
  }).filter(Boolean);
  return [...lines, "", ...totals].join("\n");
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".png": "image/png",
};

/**
 * Serves a built site on 127.0.0.1 (a secure context, as WebGPU requires).
 * @param dir the built folder
 * @param port the port (0: any free one)
 * @param log told each path requested (tests watch what the page fetches)
 * @returns the server; `server.addr.port` is the port it got
 */
export function serveSite(
  dir: string,
  port = 8000,
  log?: (path: string) => void,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    log?.(path);
    const file = normalize(join(dir, path.endsWith("/") ? `${path}index.html` : path));
    if (relative(dir, file).startsWith("..")) return new Response("Not found", { status: 404 });
    try {
      return new Response(await Deno.readFile(file), {
        headers: {
          "content-type": TYPES[extname(file)] ?? "application/octet-stream",
          "cache-control": "no-store",
        },
      });
    } catch {
      return new Response("Not found", { status: 404 });
    }
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      serve: { type: "boolean" },
      out: { type: "string" },
      port: { type: "string" },
    },
  });
  const bundle = await buildSite(values.out);
  console.log(`built ${bundle.outDir} in ${(bundle.ms / 1000).toFixed(1)} s:`);
  console.log(bundleTable(bundle));
  if (values.serve) {
    const server = serveSite(bundle.outDir, Number(values.port ?? 8000));
    console.log(`serving on http://127.0.0.1:${server.addr.port}/ (Ctrl-C stops)`);
  }
}
