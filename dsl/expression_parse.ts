/**
 * TypeScript source -> checked `Program` (see `expression.ts` for the language). The source is
 * parsed with ts-morph and walked once; anything outside the subset (loops, strings,
 * `Date.now()`, assignments, `let`, `this`, ...) is refused with a `PatternError` naming its
 * line (1-based within the function or expression) and the construct.
 * @module
 */
import { createRequire } from "node:module";
import type * as TsMorph from "ts-morph";
import type { ts } from "ts-morph";
import { PatternError } from "./errors.ts";
import {
  type ArrayConstant,
  type BinaryOp,
  type Constants,
  type Expr,
  type ExpressionRole,
  type InputName,
  type MathFn,
  type Origin,
  type Program,
  ROLE_INPUTS,
  type ValueType,
} from "./expression.ts";

/** The JSON of a predicate or score: source, captured constants, registered masks it calls. */
export interface ExpressionSource {
  expr: string;
  constants?: Constants;
  masks?: Record<string, MaskSource>;
}

/** A registered mask as stored in a pattern: a function's source and its own constants. */
export interface MaskSource {
  expr: string;
  constants?: Constants;
}

const I32_MAX = 0x7fffffff;
/** Functions every role may call, and those only score modifiers may (they return reals). */
const INTEGER_MATH = ["abs", "min", "max", "floor"] as const;
const REAL_MATH = ["exp", "log", "tanh", "sqrt", "pow"] as const;
const SUBSET = "allowed: arithmetic, comparisons, && || !, ?:, %, Math.abs/min/max/floor " +
  "(scores: also exp/log/tanh/sqrt/pow), const, constants, registered masks";

const cache = new Map<string, Program>();
let project: TsMorph.Project | undefined;

// ts-morph carries the whole TypeScript compiler: loading it takes about 120 ms, so it loads on
// the first TypeScript source, not with every program that imports the DSL.
type Node = TsMorph.Node;
type SyntaxKind = TsMorph.SyntaxKind;
let Node: typeof TsMorph.Node;
let SyntaxKind: typeof TsMorph.SyntaxKind;
let tsc: typeof TsMorph.ts;

/**
 * Never called: a literal `import()` puts ts-morph in Deno's module graph, so a fresh machine
 * fetches it with the rest, and the `require` below finds it without evaluating it at start-up.
 */
export function tsMorphModule(): Promise<typeof TsMorph> {
  return import("ts-morph");
}

function loadTsMorph(): TsMorph.Project {
  if (project) return project;
  const morph: typeof TsMorph = createRequire(import.meta.url)("ts-morph");
  ({ Node, SyntaxKind, ts: tsc } = morph);
  [BINARY, REFUSED, ASSIGNMENTS] = [binaryOps(), refusedKinds(), assignmentKinds()];
  return project = new morph.Project({ useInMemoryFileSystem: true });
}

/**
 * Checks a predicate (`role` "mask") or score modifier (`"score"`) and returns its program.
 * Results are cached by source, so every stage may call this freely.
 * @param source the expression or function source, its constants and registered masks
 * @param role what the source is written for
 * @returns the checked program
 * @throws {PatternError} "line L: <construct> ..." for anything outside the subset
 * @example
 * ```ts
 * import { compileExpression } from "./expression_parse.ts";
 * const p = compileExpression({ expr: "(q, k) => Math.abs(q - k) <= W", constants: { W: 4 } }, "mask");
 * console.log(p.result.type); // "bool"
 * ```
 */
export function compileExpression(source: ExpressionSource, role: "mask" | "score"): Program {
  const key = JSON.stringify([role, source.expr, source.constants ?? {}, source.masks ?? {}]);
  let program = cache.get(key);
  if (!program) {
    program = new Checker(source.masks ?? {}, []).program(source, role);
    cache.set(key, program);
  }
  return program;
}

/**
 * Checks a registered mask: a function of its own (integer) parameters returning a boolean,
 * which may call the masks in `masks`.
 * @param name the name calls use
 * @param source the function's source and constants
 * @param masks masks it may call
 * @returns the checked program
 * @throws {PatternError} "mask NAME: line L: ..." for anything outside the subset
 * @example
 * ```ts
 * import { compileMask } from "./expression_parse.ts";
 * compileMask("near", { expr: "(a, b) => Math.abs(a - b) <= 2" }, {}).params; // ["a", "b"]
 * ```
 */
export function compileMask(
  name: string,
  source: MaskSource,
  masks: Record<string, MaskSource>,
): Program {
  try {
    return new Checker(masks, [name]).program(source, "registered");
  } catch (e) {
    if (!(e instanceof PatternError) || e.message.startsWith("mask ")) throw e;
    throw new PatternError(`mask ${name}: ${e.message}`);
  }
}

/**
 * The plain function names a source calls (candidates for registered masks), in order.
 * @param expr a function's or expression's source
 * @returns distinct callee identifiers; `Math.abs` and the like are not plain names
 * @throws {PatternError} when the source does not parse
 * @example
 * ```ts
 * import { calledNames } from "./expression_parse.ts";
 * calledNames("(q, k) => near(q, k) || Math.abs(q - k) == 7"); // ["near"]
 * ```
 */
export function calledNames(expr: string): string[] {
  const names: string[] = [];
  withParsed(expr, (root) =>
    root.forEachDescendant((node) => {
      if (node.getKind() !== SyntaxKind.CallExpression) return;
      const callee = (node.compilerNode as ts.CallExpression).expression;
      if (tsc.isIdentifier(callee) && !names.includes(callee.text)) names.push(callee.text);
    }));
  return names;
}

let files = 0;

/**
 * Parses `(source)` as one expression statement and calls `f` with the expression. Each parse
 * has a file of its own, removed afterwards: a registered mask is parsed while its caller's
 * nodes are still in use.
 */
function withParsed<T>(expr: string, f: (root: Node) => T): T {
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

function fail(line: number, message: string): never {
  throw new PatternError(`line ${line}: ${message}`);
}

/** A name in scope. */
type Binding =
  | { kind: "input"; name: InputName }
  | { kind: "param"; index: number }
  | { kind: "local"; index: number; type: ValueType }
  | { kind: "scalar"; value: number }
  | { kind: "array"; array: ArrayConstant };

/** Checks one program; registered masks it calls are checked by child checkers. */
class Checker {
  readonly #scope = new Map<string, Binding>();
  readonly #locals: { name: string; value: Expr }[] = [];
  readonly #arrays: Record<string, ArrayConstant> = {};
  readonly #called: Record<string, Program> = {};
  #role: ExpressionRole = "mask";
  #paramTypes: ValueType[] = [];

  constructor(
    readonly masks: Record<string, MaskSource>,
    /** Registered masks being checked above this one (recursion is refused). */
    readonly stack: string[],
  ) {}

  program(source: { expr: string; constants?: Constants }, role: ExpressionRole): Program {
    this.#role = role;
    if (typeof source.expr !== "string" || source.expr.trim() === "") {
      fail(1, "the expression is empty");
    }
    return withParsed(source.expr, (root) => this.#check(root, source, role));
  }

  #check(root: Node, source: { expr: string; constants?: Constants }, role: ExpressionRole) {
    rejectConstructs(root);
    const constants = source.constants ?? {};
    const isFunction = root.getKind() === SyntaxKind.ArrowFunction ||
      root.getKind() === SyntaxKind.FunctionExpression;
    const params = isFunction ? this.#bindParams(root) : this.#bindInputs(root);
    for (const [name, value] of Object.entries(constants)) this.#bindConstant(name, value);
    const result = isFunction ? this.#body(root) : this.#expr(root);
    if (role === "score") {
      if (result.type === "bool") fail(result.origin.line, "a score modifier must return a number");
    } else if (result.type !== "bool") {
      fail(result.origin.line, `a ${role === "mask" ? "predicate" : "mask"} must return a boolean`);
    }
    return {
      role,
      source: source.expr,
      params,
      locals: this.#locals,
      result,
      arrays: this.#arrays,
      masks: this.#called,
    };
  }

  #bindInputs(root: Node): string[] {
    if (this.#role === "registered") {
      fail(root.getStartLineNumber(), "a registered mask must be a function, e.g. (q, k) => ...");
    }
    for (const name of ROLE_INPUTS[this.#role]) this.#scope.set(name, { kind: "input", name });
    return [];
  }

  #bindParams(root: Node): string[] {
    const fn = root.compilerNode as ts.ArrowFunction | ts.FunctionExpression;
    const line = root.getStartLineNumber();
    if (fn.asteriskToken) fail(line, "a generator function is not allowed");
    if (fn.modifiers?.some((m) => m.kind === SyntaxKind.AsyncKeyword)) {
      fail(line, "an async function is not allowed");
    }
    const inputs: readonly string[] = ROLE_INPUTS[this.#role];
    if (this.#role !== "registered" && fn.parameters.length > inputs.length) {
      fail(line, `too many parameters: at most ${inputs.length} (${inputs.join(", ")})`);
    }
    const names: string[] = [];
    fn.parameters.forEach((p, i) => {
      if (!tsc.isIdentifier(p.name) || p.initializer || p.dotDotDotToken) {
        fail(line, `parameter ${i + 1} must be a plain name (no default, rest or destructuring)`);
      }
      const name = p.name.text;
      this.#declare(name, line);
      names.push(name);
      this.#scope.set(
        name,
        this.#role === "registered"
          ? { kind: "param", index: i }
          : { kind: "input", name: inputs[i] as InputName },
      );
    });
    this.#paramTypes = names.map(() => "int");
    return this.#role === "registered" ? names : [];
  }

  #bindConstant(name: string, value: number | number[]) {
    if (!/^[A-Za-z_$][\w$]*$/.test(name)) fail(1, `constant name "${name}" is not an identifier`);
    if (this.#scope.has(name) || name === "Math") {
      fail(1, `constant "${name}" has the name of a parameter or input; rename it`);
    }
    if (Array.isArray(value)) {
      if (value.length === 0 || value.length > 4096 || !value.every(Number.isFinite)) {
        fail(1, `constant ${name} must be a number or an array of 1 to 4096 finite numbers`);
      }
      const type = value.every(isI32) ? "int" : "real";
      this.#scope.set(name, { kind: "array", array: { values: [...value], type } });
    } else {
      if (!Number.isFinite(value)) fail(1, `constant ${name} must be finite, got ${value}`);
      this.#scope.set(name, { kind: "scalar", value });
    }
  }

  #declare(name: string, line: number) {
    if (this.#scope.has(name)) fail(line, `"${name}" is defined twice`);
  }

  /** A block of `const`s ending in `return`, or an expression body. */
  #body(root: Node): Expr {
    const body = (root as Node & { getBody(): Node }).getBody();
    if (!Node.isBlock(body)) return this.#expr(body);
    const block = body;
    const statements = block.getStatements();
    for (let i = 0; i < statements.length; i++) {
      const s = statements[i];
      const line = s.getStartLineNumber();
      if (s.getKind() === SyntaxKind.ReturnStatement) {
        if (i !== statements.length - 1) fail(line, "code after return is not allowed");
        const value = s.asKindOrThrow(SyntaxKind.ReturnStatement).getExpression();
        if (!value) fail(line, "return needs a value");
        return this.#expr(value);
      }
      if (s.getKind() !== SyntaxKind.VariableStatement) {
        fail(line, `${constructName(s)} is not allowed (${SUBSET})`);
      }
      const list = (s.compilerNode as ts.VariableStatement).declarationList;
      if (!(list.flags & tsc.NodeFlags.Const)) {
        fail(line, `${list.flags & tsc.NodeFlags.Let ? "let" : "var"} is not allowed: use const`);
      }
      for (const d of s.getDescendantsOfKind(SyntaxKind.VariableDeclaration)) {
        const name = (d.compilerNode as ts.VariableDeclaration).name;
        const init = d.getInitializer();
        if (!tsc.isIdentifier(name) || !init) fail(line, "const needs a plain name and a value");
        this.#declare(name.text, d.getStartLineNumber());
        const value = this.#expr(init);
        const index = this.#locals.push({ name: name.text, value }) - 1;
        this.#scope.set(name.text, { kind: "local", index, type: value.type });
      }
    }
    fail(block.getEndLineNumber(), "the function must end with return <value>");
  }

  #expr(node: Node): Expr {
    const origin: Origin = { line: node.getStartLineNumber(), text: clip(node.getText()) };
    const at = (message: string): never => fail(origin.line, message);
    const c = node.compilerNode;
    switch (node.getKind()) {
      case SyntaxKind.ParenthesizedExpression:
        return this.#expr(node.asKindOrThrow(SyntaxKind.ParenthesizedExpression).getExpression());
      case SyntaxKind.AsExpression: // type annotations do not change the value
      case SyntaxKind.SatisfiesExpression:
      case SyntaxKind.NonNullExpression:
        return this.#expr((node as Node & { getExpression(): Node }).getExpression());
      case SyntaxKind.NumericLiteral:
        return this.#number(Number((c as ts.NumericLiteral).text), origin);
      case SyntaxKind.TrueKeyword:
      case SyntaxKind.FalseKeyword:
        return { op: "literal", value: c.kind === SyntaxKind.TrueKeyword, type: "bool", origin };
      case SyntaxKind.Identifier:
        return this.#name((c as ts.Identifier).text, origin);
      case SyntaxKind.PrefixUnaryExpression: {
        const u = c as ts.PrefixUnaryExpression;
        const arg = this.#expr(node.asKindOrThrow(SyntaxKind.PrefixUnaryExpression).getOperand());
        if (u.operator === SyntaxKind.ExclamationToken) {
          if (arg.type !== "bool") at(`! needs a boolean, got ${article(arg.type)}`);
          return { op: "not", arg, type: "bool", origin };
        }
        if (u.operator === SyntaxKind.MinusToken || u.operator === SyntaxKind.PlusToken) {
          numeric(arg, tsc.tokenToString(u.operator)!);
          return u.operator === SyntaxKind.PlusToken
            ? arg
            : { op: "neg", arg, type: arg.type, origin };
        }
        return at(`the operator ${tsc.tokenToString(u.operator)} is not allowed (${SUBSET})`);
      }
      case SyntaxKind.BinaryExpression:
        return this.#binary(node, origin);
      case SyntaxKind.ConditionalExpression: {
        const t = node.asKindOrThrow(SyntaxKind.ConditionalExpression);
        const [cond, then, other] = [t.getCondition(), t.getWhenTrue(), t.getWhenFalse()]
          .map((x) => this.#expr(x));
        if (cond.type !== "bool") at(`a ?: condition must be a boolean, got ${article(cond.type)}`);
        return { op: "select", cond, then, else: other, type: join(then, other, "?:"), origin };
      }
      case SyntaxKind.CallExpression:
        return this.#call(node, origin);
      case SyntaxKind.ElementAccessExpression: {
        const e = c as ts.ElementAccessExpression;
        const binding = tsc.isIdentifier(e.expression)
          ? this.#scope.get(e.expression.text)
          : undefined;
        if (binding?.kind !== "array") {
          at(`indexing is allowed only on a captured constant array, got ${origin.text}`);
        }
        const array = (e.expression as ts.Identifier).text;
        const index = this.#expr(
          node.asKindOrThrow(SyntaxKind.ElementAccessExpression).getArgumentExpressionOrThrow(),
        );
        if (index.type !== "int") {
          at(`an array index must be an integer, got ${article(index.type)}`);
        }
        const { array: constant } = binding as { array: ArrayConstant };
        this.#arrays[array] = constant;
        return { op: "element", array, index, type: this.#numberType(constant.type, at), origin };
      }
      default:
        return at(`${constructName(node)} is not allowed (${SUBSET})`);
    }
  }

  #number(value: number, origin: Origin): Expr {
    if (Number.isInteger(value)) {
      if (Math.abs(value) > I32_MAX) fail(origin.line, `${origin.text} is outside the i32 range`);
      return { op: "literal", value, type: "int", origin };
    }
    this.#numberType("real", (m) => fail(origin.line, m), origin.text);
    return { op: "literal", value, type: "real", origin };
  }

  /** Reals exist only in score modifiers: predicates stay exact on integers. */
  #numberType(type: "int" | "real", at: (m: string) => never, what = "a real value"): ValueType {
    if (type === "real" && this.#role !== "score") {
      at(`${what} is not an integer: predicates compute on integers only`);
    }
    return type;
  }

  #name(name: string, origin: Origin): Expr {
    const b = this.#scope.get(name);
    const at = (message: string): never => fail(origin.line, message);
    if (!b) {
      const known = [...this.#scope.keys()].join(", ");
      return at(
        `unknown name ${name} (in scope: ${known || "nothing"}; pass other values in constants)`,
      );
    }
    switch (b.kind) {
      case "input":
        return { op: "input", name: b.name, type: b.name === "s" ? "real" : "int", origin };
      case "param":
        return { op: "param", index: b.index, name, type: this.#paramTypes[b.index], origin };
      case "local":
        return { op: "local", index: b.index, name, type: b.type, origin };
      case "scalar": {
        const type = isI32(b.value) ? "int" : "real";
        this.#numberType(type, at, `constant ${name} = ${b.value}`);
        return { op: "literal", value: b.value, type, origin };
      }
      case "array":
        return at(`${name} is an array: index it, e.g. ${name}[h]`);
    }
  }

  #binary(node: Node, origin: Origin): Expr {
    const c = node.compilerNode as ts.BinaryExpression;
    const at = (message: string): never => fail(origin.line, message);
    const token = c.operatorToken.kind;
    const op = BINARY[token];
    const text = tsc.tokenToString(token) ?? "?";
    if (!op) return at(`the operator ${text} is not allowed (${SUBSET})`);
    const bin = node.asKindOrThrow(SyntaxKind.BinaryExpression);
    const a = this.#expr(bin.getLeft());
    const b = this.#expr(bin.getRight());
    switch (op) {
      case "&&":
      case "||":
        if (a.type !== "bool" || b.type !== "bool") {
          at(`${text} needs booleans, got ${article(a.type)} and ${article(b.type)}`);
        }
        return { op: "binary", fn: op, a, b, type: "bool", origin };
      case "==":
      case "!=":
        if ((a.type === "bool") !== (b.type === "bool")) {
          at(`${text} compares ${article(a.type)} with ${article(b.type)}`);
        }
        return { op: "binary", fn: op, a, b, type: "bool", origin };
      case "<":
      case "<=":
      case ">":
      case ">=":
        numeric(a, text), numeric(b, text);
        return { op: "binary", fn: op, a, b, type: "bool", origin };
      case "mod":
        if (a.type !== "int" || b.type !== "int") at(`% needs integers, got ${origin.text}`);
        return { op: "binary", fn: op, a, b, type: "int", origin };
      case "/":
        numeric(a, text), numeric(b, text);
        if (this.#role !== "score") {
          at(`/ is real division; a predicate divides integers with Math.floor(a / b)`);
        }
        return { op: "binary", fn: op, a, b, type: "real", origin };
      default:
        return { op: "binary", fn: op, a, b, type: join(a, b, text), origin };
    }
  }

  #call(node: Node, origin: Origin): Expr {
    const c = node.compilerNode as ts.CallExpression;
    const at = (message: string): never => fail(origin.line, message);
    const callee = c.expression;
    const argNodes = node.asKindOrThrow(SyntaxKind.CallExpression).getArguments();
    if (
      tsc.isPropertyAccessExpression(callee) && tsc.isIdentifier(callee.expression) &&
      callee.expression.text === "Math"
    ) {
      return this.#math(callee.name.text, argNodes, origin);
    }
    if (!tsc.isIdentifier(callee)) {
      return at(`the call ${clip(callee.getText())}() is not allowed (${SUBSET})`);
    }
    const name = callee.text;
    const program = this.#mask(name, origin);
    const args = argNodes.map((n) => this.#expr(n));
    if (args.length !== program.params.length) {
      at(`mask ${name} takes ${program.params.length} arguments, got ${args.length}`);
    }
    args.forEach((arg, i) => {
      if (arg.type !== "int") at(`argument ${i + 1} of ${name} must be an integer`);
    });
    return { op: "call", mask: name, args, type: "bool", origin };
  }

  #mask(name: string, origin: Origin): Program {
    const at = (message: string): never => fail(origin.line, message);
    if (this.#scope.has(name)) at(`${name} is not a function`);
    const source = Object.hasOwn(this.masks, name) ? this.masks[name] : undefined;
    if (!source) {
      const known = Object.keys(this.masks);
      return at(
        `call to unknown function ${name}() (${SUBSET}; registered masks here: ` +
          `${known.join(", ") || "none"}; register one with registerMask("${name}", fn))`,
      );
    }
    if (this.stack.includes(name)) {
      return at(`mask ${name} calls itself (${[...this.stack, name].join(" -> ")})`);
    }
    if (!this.#called[name]) {
      const child = new Checker(this.masks, [...this.stack, name]);
      try {
        this.#called[name] = child.program(source, "registered");
      } catch (e) {
        if (!(e instanceof PatternError) || e.message.startsWith("mask ")) throw e;
        throw new PatternError(`mask ${name}: ${e.message}`);
      }
      Object.assign(this.#called, this.#called[name].masks);
    }
    return this.#called[name];
  }

  #math(name: string, argNodes: Node[], origin: Origin): Expr {
    const at = (message: string): never => fail(origin.line, message);
    const isInteger = (INTEGER_MATH as readonly string[]).includes(name);
    const isReal = (REAL_MATH as readonly string[]).includes(name);
    if (!isInteger && !isReal) return at(`Math.${name} is not allowed (${SUBSET})`);
    if (isReal && this.#role !== "score") {
      at(`Math.${name} is for score modifiers: predicates compute on integers only`);
    }
    const fn = name as MathFn;
    const arity = fn === "min" || fn === "max" ? undefined : fn === "pow" ? 2 : 1;
    if (arity !== undefined ? argNodes.length !== arity : argNodes.length < 1) {
      at(`Math.${name} takes ${arity ?? "at least 1"} argument${arity === 1 ? "" : "s"}`);
    }
    if (fn === "floor") {
      // Math.floor(a / b) of integers is exact integer division, identical in JS and WGSL.
      let inner = argNodes[0];
      while (Node.isParenthesizedExpression(inner)) inner = inner.getExpression();
      if (
        Node.isBinaryExpression(inner) &&
        inner.getOperatorToken().getKind() === SyntaxKind.SlashToken
      ) {
        const a = this.#expr(inner.getLeft());
        const b = this.#expr(inner.getRight());
        if (a.type === "int" && b.type === "int") {
          return { op: "binary", fn: "floorDiv", a, b, type: "int", origin };
        }
      }
      const arg = this.#expr(argNodes[0]);
      numeric(arg, "Math.floor");
      return arg.type === "int" ? arg : { op: "math", fn, args: [arg], type: "real", origin };
    }
    const args = argNodes.map((n) => this.#expr(n));
    args.forEach((a) => numeric(a, `Math.${name}`));
    const type: ValueType = isReal ? "real" : args.every((a) => a.type === "int") ? "int" : "real";
    return { op: "math", fn, args, type, origin };
  }
}

let BINARY: Partial<Record<SyntaxKind, BinaryOp>>;
const binaryOps = (): typeof BINARY => ({
  [SyntaxKind.PlusToken]: "+",
  [SyntaxKind.MinusToken]: "-",
  [SyntaxKind.AsteriskToken]: "*",
  [SyntaxKind.SlashToken]: "/",
  [SyntaxKind.PercentToken]: "mod",
  [SyntaxKind.LessThanToken]: "<",
  [SyntaxKind.LessThanEqualsToken]: "<=",
  [SyntaxKind.GreaterThanToken]: ">",
  [SyntaxKind.GreaterThanEqualsToken]: ">=",
  [SyntaxKind.EqualsEqualsToken]: "==",
  [SyntaxKind.EqualsEqualsEqualsToken]: "==",
  [SyntaxKind.ExclamationEqualsToken]: "!=",
  [SyntaxKind.ExclamationEqualsEqualsToken]: "!=",
  [SyntaxKind.AmpersandAmpersandToken]: "&&",
  [SyntaxKind.BarBarToken]: "||",
});

function numeric(e: Expr, what: string): void {
  if (e.type === "bool") {
    fail(e.origin.line, `${what} needs numbers, got the boolean ${e.origin.text}`);
  }
}

/** The type of an arithmetic result or a ?: whose arms are `a` and `b`. */
function join(a: Expr, b: Expr, what: string): ValueType {
  if (what === "?:") {
    if ((a.type === "bool") !== (b.type === "bool")) {
      fail(a.origin.line, `?: arms must both be booleans or both numbers`);
    }
    if (a.type === "bool") return "bool";
  } else {
    numeric(a, what), numeric(b, what);
  }
  return a.type === "int" && b.type === "int" ? "int" : "real";
}

function isI32(x: number): boolean {
  return Number.isInteger(x) && Math.abs(x) <= I32_MAX;
}

function article(type: ValueType): string {
  return type === "int" ? "an integer" : type === "real" ? "a real" : "a boolean";
}

function clip(text: string): string {
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
function rejectConstructs(root: Node): void {
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
function constructName(node: Node): string {
  const kind = node.getKind();
  const refused = REFUSED[kind];
  if (refused) return refused;
  if (kind === SyntaxKind.PropertyAccessExpression) {
    return `the property access ${clip(node.getText())}`;
  }
  if (kind === SyntaxKind.ExpressionStatement) return "a statement that is not const or return";
  return `${node.getKindName()} (${clip(node.getText())})`;
}
