/**
 * A predicate's or score's TypeScript source as syntax: parsed with ts-morph (loaded on first
 * use), and refused, with its line, wherever it holds a construct outside the subset (loops,
 * strings, assignments, `let`, `this`, nested functions, ...). expression_typing.ts types what
 * is left.
 * @module
 */
import type * as TsMorph from "ts-morph";
import type { ts } from "ts-morph";
import { PatternError } from "../core/errors.ts";
import { currentHost } from "../core/host.ts";

/** What the subset allows, for refusals to name. */
export const SUBSET = "allowed: arithmetic, comparisons, && || !, ?:, %, Math.abs/min/max/floor " +
  "(scores: also exp/log/tanh/sqrt/pow), const, constants, registered masks";

let project: TsMorph.Project | undefined;

// ts-morph carries the whole TypeScript compiler: loading it takes about 120 ms, so it loads on
// the first TypeScript source, not with every program that imports the DSL (under Deno through
// the host's `require`; in a browser by `loadExpressionParser`, awaited first). These bindings
// are set then (`useTsMorph`), before any node exists.
export type Node = TsMorph.Node;
export type SyntaxKind = TsMorph.SyntaxKind;
export let Node: typeof TsMorph.Node;
export let SyntaxKind: typeof TsMorph.SyntaxKind;
export let tsc: typeof TsMorph.ts;

/**
 * Loads the parser of TypeScript predicates and score modifiers (ts-morph, about 13 MB of
 * JavaScript) now, by a dynamic import. Under Deno it loads by itself on the first predicate;
 * a host without a synchronous `require` (a browser page or worker) awaits this before it
 * checks a pattern with a predicate or score modifier. The literal `import()` also puts
 * ts-morph in Deno's module graph, so a fresh machine fetches it with the rest, and a bundler
 * splits it into a chunk of its own.
 * @returns when the parser is ready
 * @example
 * ```ts
 * import { loadExpressionParser } from "./expression_syntax.ts";
 * await loadExpressionParser(); // then mask((q, k) => ...) checks without waiting
 * ```
 */
export async function loadExpressionParser(): Promise<void> {
  if (project) return;
  const module = await import("ts-morph");
  // A bundler's CommonJS wrapper may hold the exports under `default`.
  useTsMorph(
    "Project" in module ? module : (module as { default: typeof TsMorph }).default,
  );
}

function loadTsMorph(): TsMorph.Project {
  if (project) return project;
  const morph = currentHost().require?.("ts-morph") as typeof TsMorph | undefined;
  if (!morph) {
    throw new PatternError(
      "Cannot check TypeScript source yet: its parser (ts-morph) loads on demand here; " +
        "await loadExpressionParser() before compiling a predicate or score modifier",
    );
  }
  return useTsMorph(morph);
}

function useTsMorph(morph: typeof TsMorph): TsMorph.Project {
  ({ Node, SyntaxKind, ts: tsc } = morph);
  [REFUSED, ASSIGNMENTS] = [refusedKinds(), assignmentKinds()];
  return project = new morph.Project({ useInMemoryFileSystem: true });
}

let files = 0;

/**
 * Parses `(source)` as one expression statement and calls `f` with the expression. Each parse
 * has a file of its own, removed afterwards: a registered mask is parsed while its caller's
 * nodes are still in use.
 */
export function withParsed<T>(expr: string, f: (root: Node) => T): T {
  const project = loadTsMorph();
  // The newline keeps a trailing `//` comment from swallowing the closing parenthesis.
  const file = project.createSourceFile(`expression${files++}.ts`, `(${expr}\n)`);
  try {
    const diagnostics = (file.compilerNode as unknown as { parseDiagnostics: ts.Diagnostic[] })
      .parseDiagnostics;
    if (diagnostics.length > 0) {
      const d = diagnostics[0];
      const line = Math.min(
        file.getLineAndColumnAtPos(d.start ?? 0).line,
        expr.split("\n").length,
      );
      fail(line, `syntax error: ${tsc.flattenDiagnosticMessageText(d.messageText, " ")}`);
    }
    const statements = file.getStatements();
    if (statements.length !== 1 || statements[0].getKind() !== SyntaxKind.ExpressionStatement) {
      fail(1, "expected one function or expression");
    }
    const wrapped = statements[0].asKindOrThrow(SyntaxKind.ExpressionStatement).getExpression();
    return f(Node.isParenthesizedExpression(wrapped) ? wrapped.getExpression() : wrapped);
  } finally {
    project.removeSourceFile(file);
  }
}

/** Refuses the source: "line L: message" (1-based within the function or expression). */
export function fail(line: number, message: string): never {
  throw new PatternError(`line ${line}: ${message}`);
}

/** A node's text on one line, cut to 40 characters, for messages. */
export function clip(text: string): string {
  const one = text.replace(/\s+/g, " ");
  return one.length > 40 ? one.slice(0, 37) + "..." : one;
}

/** Constructs refused wherever they appear, found before anything else is checked. */
let REFUSED: Partial<Record<SyntaxKind, string>>;
const refusedKinds = (): typeof REFUSED => ({
  [SyntaxKind.ForStatement]: "a for loop",
  [SyntaxKind.ForInStatement]: "a for-in loop",
  [SyntaxKind.ForOfStatement]: "a for-of loop",
  [SyntaxKind.WhileStatement]: "a while loop",
  [SyntaxKind.DoStatement]: "a do-while loop",
  [SyntaxKind.StringLiteral]: "a string",
  [SyntaxKind.NoSubstitutionTemplateLiteral]: "a string",
  [SyntaxKind.TemplateExpression]: "a template string",
  [SyntaxKind.RegularExpressionLiteral]: "a regular expression",
  [SyntaxKind.ThisKeyword]: "this",
  [SyntaxKind.NewExpression]: "new",
  [SyntaxKind.IfStatement]: "an if statement (use ?:)",
  [SyntaxKind.SwitchStatement]: "a switch statement",
  [SyntaxKind.TryStatement]: "try",
  [SyntaxKind.ThrowStatement]: "throw",
  [SyntaxKind.AwaitExpression]: "await",
  [SyntaxKind.YieldExpression]: "yield",
  [SyntaxKind.DeleteExpression]: "delete",
  [SyntaxKind.TypeOfExpression]: "typeof",
  [SyntaxKind.VoidExpression]: "void",
  [SyntaxKind.ArrayLiteralExpression]: "an array literal",
  [SyntaxKind.ObjectLiteralExpression]: "an object literal",
  [SyntaxKind.SpreadElement]: "spread (...)",
  [SyntaxKind.ClassExpression]: "a class",
  [SyntaxKind.BigIntLiteral]: "a bigint",
  [SyntaxKind.PostfixUnaryExpression]: "an increment or decrement (an assignment)",
});

let ASSIGNMENTS: Set<SyntaxKind>;
const assignmentKinds = () =>
  new Set([
    SyntaxKind.EqualsToken,
    SyntaxKind.PlusEqualsToken,
    SyntaxKind.MinusEqualsToken,
    SyntaxKind.AsteriskEqualsToken,
    SyntaxKind.SlashEqualsToken,
    SyntaxKind.PercentEqualsToken,
    SyntaxKind.AmpersandAmpersandEqualsToken,
    SyntaxKind.BarBarEqualsToken,
    SyntaxKind.QuestionQuestionEqualsToken,
  ]);

/** Finds the first refused construct in source order, so its message is the clearest one. */
export function rejectConstructs(root: Node): void {
  const isFunction = (n: Node) =>
    n.getKind() === SyntaxKind.ArrowFunction || n.getKind() === SyntaxKind.FunctionExpression ||
    n.getKind() === SyntaxKind.FunctionDeclaration;
  const check = (node: Node) => {
    const c = node.compilerNode;
    let what = REFUSED[node.getKind()];
    if (tsc.isBinaryExpression(c) && ASSIGNMENTS.has(c.operatorToken.kind)) {
      what = `an assignment (${tsc.tokenToString(c.operatorToken.kind)})`;
    }
    if (
      tsc.isPrefixUnaryExpression(c) &&
      (c.operator === SyntaxKind.PlusPlusToken || c.operator === SyntaxKind.MinusMinusToken)
    ) what = "an increment or decrement (an assignment)";
    if (tsc.isVariableDeclarationList(c) && !(c.flags & tsc.NodeFlags.Const)) {
      what = `${c.flags & tsc.NodeFlags.Let ? "let" : "var"} (use const: locals never change)`;
    }
    if (node !== root && isFunction(node)) what = "a nested function";
    if (what) fail(node.getStartLineNumber(), `${what} is not allowed (${SUBSET})`);
  };
  check(root);
  root.forEachDescendant(check);
}

/** A readable name for a statement or expression kind outside the subset. */
export function constructName(node: Node): string {
  const kind = node.getKind();
  const refused = REFUSED[kind];
  if (refused) return refused;
  if (kind === SyntaxKind.PropertyAccessExpression) {
    return `the property access ${clip(node.getText())}`;
  }
  if (kind === SyntaxKind.ExpressionStatement) return "a statement that is not const or return";
  return `${node.getKindName()} (${clip(node.getText())})`;
}
