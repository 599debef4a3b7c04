/**
 * The design document's cross-references: every "DESIGN" section a source comment or document
 * cites exists in docs/DESIGN.md, and no file points at a path outside the repository, which a
 * clone cannot open. The needles are built from pieces, so this file does not match itself.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join, relative } from "node:path";

const root = fileURLToPath(new URL("../../", import.meta.url));
const SKIPPED_DIRS = new Set([".git", "node_modules", ".device", ".scratch"]);

/** Every file under the repository root whose name ends in one of `extensions`. */
async function filesEndingIn(extensions: string[], dir = root): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) {
      if (!SKIPPED_DIRS.has(entry.name)) out.push(...await filesEndingIn(extensions, path));
    } else if (entry.isFile && extensions.some((e) => entry.name.endsWith(e))) {
      out.push(path);
    }
  }
  return out.sort();
}

/** `path:line` of offset `at` in `text`, relative to the repository root. */
function where(path: string, text: string, at: number): string {
  return `${relative(root, path)}:${text.slice(0, at).split("\n").length}`;
}

/** The numbers of the `## N. Title` headings of docs/DESIGN.md. */
async function designSections(): Promise<Set<number>> {
  const text = await Deno.readTextFile(join(root, "docs", "DESIGN.md"));
  return new Set([...text.matchAll(/^## (\d+)\. \S/gm)].map((m) => Number(m[1])));
}

// "DESIGN §2", "DESIGN.md §2", and both ends of a range such as "DESIGN §1-§2".
const SECTION = "\u00a7";
const REFERENCE = new RegExp(
  `${"DES" + "IGN"}(?:\\.md)? ?${SECTION}(\\d+)(?:\\s*[-\u2013]\\s*${SECTION}(\\d+))?`,
  "g",
);

Deno.test("every DESIGN section reference names a section of docs/DESIGN.md", async () => {
  const sections = await designSections();
  for (const n of [1, 2, 4]) assert.ok(sections.has(n), `docs/DESIGN.md has no "## ${n}." heading`);
  const broken: string[] = [];
  let found = 0;
  for (const path of await filesEndingIn([".ts", ".md"])) {
    const text = await Deno.readTextFile(path);
    for (const m of text.matchAll(REFERENCE)) {
      for (const cited of [m[1], m[2]].filter((x) => x !== undefined)) {
        found++;
        if (!sections.has(Number(cited))) {
          broken.push(`${where(path, text, m.index!)}: ${m[0]} (no "## ${cited}." heading)`);
        }
      }
    }
  }
  assert.ok(found > 0, "no section references found: is the pattern still right?");
  assert.deepEqual(broken, [], `references to missing sections:\n${broken.join("\n")}`);
});

Deno.test("no file names a path outside the repository", async () => {
  const needles = [[".", ".", "/shared"].join(""), ["/", "work", "/"].join("")];
  const found: string[] = [];
  for (const path of await filesEndingIn([".ts", ".md", ".json"])) {
    const text = await Deno.readTextFile(path);
    for (const needle of needles) {
      let at = text.indexOf(needle);
      while (at >= 0) {
        found.push(`${where(path, text, at)}: ${needle}`);
        at = text.indexOf(needle, at + 1);
      }
    }
  }
  assert.deepEqual(found, [], `paths outside the repository:\n${found.join("\n")}`);
});
