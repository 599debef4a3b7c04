/**
 * Typing a parsed predicate or score (expression_syntax.ts gives the nodes) into a checked
 * `Program` (expression.ts): names bound to inputs, parameters, constants and locals; every
 * expression given a type (int, real, bool) and refused where the types do not fit; calls
 * resolved to Math functions or registered masks, which child checkers check in turn.
 * @module
 */
import type { ts } from "ts-morph";
import { PatternError } from "../core/errors.ts";
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
import type { MaskSource } from "./expression_parse.ts";
import {
  clip,
  constructName,
  fail,
  Node,
  rejectConstructs,
  SUBSET,
  SyntaxKind,
  tsc,
  withParsed,
} from "./expression_syntax.ts";

const I32_MAX = 0x7fffffff;
/** Functions every role may call, and those only score modifiers may (they return reals). */
const INTEGER_MATH = ["abs", "min", "max", "floor"] as const;
const REAL_MATH = ["exp", "log", "tanh", "sqrt", "pow"] as const;

/** A name in scope. */
type Binding =
  | { kind: "input"; name: InputName }
  | { kind: "param"; index: number }
  | { kind: "local"; index: number; type: ValueType }
  | { kind: "scalar"; value: number }
  | { kind: "array"; array: ArrayConstant }
  | { kind: "learned"; array: ArrayConstant };

/** Checks one program; registered masks it calls are checked by child checkers. */
export class Checker {
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

  program(
    source: { expr: string; constants?: Constants; learnable?: string[] },
    role: ExpressionRole,
  ): Program {
    this.#role = role;
    if (typeof source.expr !== "string" || source.expr.trim() === "") {
      fail(1, "the expression is empty");
    }
    return withParsed(source.expr, (root) => this.#check(root, source, role));
  }

  #check(
    root: Node,
    source: { expr: string; constants?: Constants; learnable?: string[] },
    role: ExpressionRole,
  ) {
    rejectConstructs(root);
    const constants = source.constants ?? {};
    const learnable = learnableNames(source, role);
    const isFunction = root.getKind() === SyntaxKind.ArrowFunction ||
      root.getKind() === SyntaxKind.FunctionExpression;
    const params = isFunction ? this.#bindParams(root) : this.#bindInputs(root);
    for (const [name, value] of Object.entries(constants)) {
      this.#bindConstant(name, value, learnable.has(name));
    }
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

  #bindConstant(name: string, value: number | number[], learnable: boolean) {
    if (!/^[A-Za-z_$][\w$]*$/.test(name)) fail(1, `constant name "${name}" is not an identifier`);
    if (this.#scope.has(name) || name === "Math") {
      fail(1, `constant "${name}" has the name of a parameter or input; rename it`);
    }
    if (Array.isArray(value)) {
      if (value.length === 0 || value.length > 4096 || !value.every(Number.isFinite)) {
        fail(1, `constant ${name} must be a number or an array of 1 to 4096 finite numbers`);
      }
      // A learnable array is real whatever its values: its gradient flows through reals.
      const type = !learnable && value.every(isI32) ? "int" : "real";
      const array: ArrayConstant = {
        values: [...value],
        type,
        ...(learnable ? { learnable: "array" as const } : {}),
      };
      this.#scope.set(name, { kind: "array", array });
    } else {
      if (!Number.isFinite(value)) fail(1, `constant ${name} must be finite, got ${value}`);
      // A learnable number stays a value the program reads (index 0 of a one-entry array),
      // not a literal folded into the arithmetic.
      this.#scope.set(
        name,
        learnable
          ? { kind: "learned", array: { values: [value], type: "real", learnable: "scalar" } }
          : { kind: "scalar", value },
      );
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
      case "learned": {
        this.#arrays[name] = b.array;
        const index: Expr = { op: "literal", value: 0, type: "int", origin };
        return { op: "element", array: name, index, type: "real", origin };
      }
    }
  }

  #binary(node: Node, origin: Origin): Expr {
    const c = node.compilerNode as ts.BinaryExpression;
    const at = (message: string): never => fail(origin.line, message);
    const token = c.operatorToken.kind;
    const op = (BINARY ??= binaryOps())[token];
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

/** Built on first use: SyntaxKind exists once ts-morph has loaded. */
let BINARY: Partial<Record<SyntaxKind, BinaryOp>> | undefined;
const binaryOps = (): Partial<Record<SyntaxKind, BinaryOp>> => ({
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

/**
 * The constants a score modifier learns, checked: listed once each, among its constants, and
 * only in a score modifier.
 */
function learnableNames(
  source: { constants?: Constants; learnable?: string[] },
  role: ExpressionRole,
): Set<string> {
  const names = source.learnable ?? [];
  if (names.length && role !== "score") {
    fail(1, "only a score modifier has learnable constants");
  }
  const known = Object.keys(source.constants ?? {});
  const seen = new Set<string>();
  for (const name of names) {
    if (!known.includes(name)) {
      fail(
        1,
        `learnable "${name}" is not one of the constants (${known.join(", ") || "none given"})`,
      );
    }
    if (seen.has(name)) fail(1, `learnable "${name}" is listed twice`);
    seen.add(name);
  }
  return seen;
}
