/**
 * The npm packages a browser bundle needs, where esbuild can find them: Deno keeps npm packages
 * in its own cache (`<npmCache>/registry.npmjs.org/<name>/<version>`) rather than a
 * node_modules folder, so the build links each package the lock file names into a temporary
 * node_modules, which esbuild is given as a `nodePaths` entry. esbuild then resolves packages as
 * it would in Node, `exports` and `browser` fields included. The lock holds one version of each
 * package, so one flat folder serves every importer.
 * @module
 */
import { join } from "node:path";

/**
 * Links the lock file's npm packages into `<dir>/node_modules`.
 * @param lockPath deno.lock
 * @param dir a folder for the links (e.g. a temporary one)
 * @returns the node_modules folder, for esbuild's `nodePaths`
 * @throws {Error} naming a package that is not in Deno's cache (run `deno install` first)
 */
export async function linkNpmPackages(lockPath: string, dir: string): Promise<string> {
  const lock = JSON.parse(await Deno.readTextFile(lockPath)) as {
    npm?: Record<string, { os?: string[]; cpu?: string[] }>;
  };
  const cache = await npmCache();
  const modules = join(dir, "node_modules");
  for (const [id, entry] of Object.entries(lock.npm ?? {})) {
    const { name, version } = parseId(id);
    const target = join(cache, "registry.npmjs.org", name, version);
    if (!await exists(target)) {
      if (entry.os || entry.cpu) continue; // another platform's binary: never installed here
      throw new Error(`npm package ${name}@${version} is not in Deno's cache: run deno install`);
    }
    const link = join(modules, name);
    await Deno.mkdir(join(link, ".."), { recursive: true });
    await Deno.symlink(target, link, { type: "dir" });
  }
  return modules;
}

/** `@scope/name@1.2.3_peer@4.5.6` -> name and version (the peer suffix is Deno's). */
function parseId(id: string): { name: string; version: string } {
  const at = id.indexOf("@", 1);
  return { name: id.slice(0, at), version: id.slice(at + 1).split("_")[0] };
}

async function npmCache(): Promise<string> {
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error("deno info --json failed: cannot find Deno's npm cache");
  return JSON.parse(new TextDecoder().decode(stdout)).npmCache;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
