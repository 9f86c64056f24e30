// Spec loading: YAML text -> typed Spec with defaults, or every problem with its path
// and line. Structural problems come from zod; network and cross-reference problems
// from checks.ts. Whatever zod rejects (unknown keys, bad values) is reported, then
// dropped from a copy so that the semantic checks still run: one pass shows everything.
import { isScalar, LineCounter, parseDocument, visit, type Node } from "yaml";
import { z } from "zod";
import { API_VERSION, SpecSchema, type Spec } from "./schema.js";
import { semanticProblems, type KeyReader } from "./checks.js";
import { controlChar } from "./formats.js";
import { didYouMean, formatPath, type Problem } from "../errors.js";

export interface LoadResult {
  readonly spec?: Spec;
  readonly problems: Problem[];
}

export interface LoadOptions {
  /** Reads a public key file named in the spec; absent means file references are errors. */
  readonly readKeyFile?: KeyReader;
}

/** Older apiVersions and how to bring them to the current one (none yet). */
const MIGRATIONS: Record<string, (doc: Record<string, unknown>) => Record<string, unknown>> = {};

/** YAML aliases a spec may expand; far more than any real spec uses, far less than a "billion laughs" needs. */
const MAX_ALIASES = 200;

export function loadSpec(text: string, options: LoadOptions = {}): LoadResult {
  const lines = new LineCounter();
  let doc: ReturnType<typeof parseDocument>;
  try {
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    return { problems: [yamlLimit(e)] };
  }
  if (doc.errors.length > 0) {
    return {
      problems: doc.errors.map((e) => ({
        severity: "error" as const,
        path: "",
        message: `YAML: ${e.message.split("\n")[0]}`,
        line: e.linePos?.[0]?.line,
      })),
    };
  }
  const lineOf = (path: ReadonlyArray<PropertyKey>): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n) as unknown[], true) as Node | undefined;
      if (node && typeof node === "object" && node.range) return lines.linePos(node.range[0]).line;
    }
    return undefined;
  };

  // keys that JavaScript objects treat specially vanish from the parsed data: find them in the YAML itself
  const reserved: Problem[] = [];
  visit(doc, {
    Pair(_, pair) {
      const key = isScalar(pair.key) ? pair.key.value : undefined;
      if (key === "__proto__" || key === "constructor" || key === "prototype") {
        reserved.push({ severity: "error", path: "", message: `the key "${key}" is reserved`, line: pair.key && isScalar(pair.key) && pair.key.range ? lines.linePos(pair.key.range[0]).line : undefined });
      }
    },
  });
  if (reserved.length) return { problems: reserved };
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIASES }) as unknown;
  } catch (e) {
    return { problems: [yamlLimit(e)] };
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { problems: [{ severity: "error", path: "", message: "the spec must be a YAML mapping", line: 1 }] };
  }
  const version = (raw as Record<string, unknown>).apiVersion;
  const migrate = typeof version === "string" ? MIGRATIONS[version] : undefined;
  if (migrate) raw = migrate(raw as Record<string, unknown>);

  const problems: Problem[] = [];
  // Control characters first, at their exact path; the value is then dropped, so the
  // schema's own complaint about it (or its absence) is suppressed as an echo below.
  const removed: Removed = new Map();
  const removedNames = new Set<string>();
  const controls = controlProblems(raw, lineOf);
  problems.push(...controls.map((c) => c.problem));
  if (controls.length) raw = repair(raw, controls.map((c) => c.issue), removed, removedNames);
  let result = SpecSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    problems.push(...result.error.issues.map((issue) => toProblem(issue, lineOf)));
    // Drop what is wrong and parse again, so the semantic checks can still report the
    // rest. Problems of the repaired document are not shown: they echo the ones above.
    let repaired = raw;
    for (let round = 0; round < 4 && !result.success; round++) {
      repaired = repair(repaired, result.error.issues, removed, removedNames);
      result = SpecSchema.safeParse(repaired, { reportInput: true });
    }
  }
  if (!result.success) return { problems: onePerPath(problems) };
  const spec = result.data;
  // Items dropped by repair would show up as "no host named X", or change a count ("no
  // host has role storage"): those are echoes of the item's own error.
  const dropped = [...removedNames];
  const explicit = (path: string) => doc.hasIn(pathArray(path));
  for (const { aggregateOf, ...p } of semanticProblems(spec, options.readKeyFile, explicit)) {
    if (dropped.some((n) => new RegExp(`(^|[^a-z0-9-])${n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}($|[^a-z0-9-])`, "i").test(p.message))) continue;
    if (aggregateOf !== undefined && removed.has(aggregateOf)) continue;
    const original = originalPath(pathArray(p.path), removed);
    problems.push({ ...p, path: formatPath(original), line: p.line ?? lineOf(original) });
  }
  const reported = onePerPath(problems);
  reported.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
  // A spec that needed repair is never returned: nothing may be rendered from it.
  return hasErrors(reported) ? { problems: reported } : { spec, problems: reported };
}

/**
 * One mistake, one error: the first error at a path wins (later ones there are echoes of
 * it), as does an error on a whole list item over errors inside that item. Warnings are
 * dropped where an error already stands, and repeated warnings are shown once.
 */
function onePerPath(problems: readonly Problem[]): Problem[] {
  const errorPaths = new Set<string>();
  const itemErrors: string[] = [];
  const out: Problem[] = [];
  const shadowed = (path: string) => errorPaths.has(path) || itemErrors.some((item) => path.startsWith(`${item}.`) || path.startsWith(`${item}[`));
  for (const p of problems.filter((x) => x.severity === "error")) {
    if (shadowed(p.path)) continue;
    errorPaths.add(p.path);
    if (p.path.endsWith("]")) itemErrors.push(p.path);
    out.push(p);
  }
  const seen = new Set<string>();
  for (const p of problems.filter((x) => x.severity === "warning")) {
    const key = `${p.path}\u0000${p.message}`;
    if (seen.has(key) || shadowed(p.path)) continue;
    seen.add(key);
    out.push(p);
  }
  return out;
}

function yamlLimit(e: unknown): Problem {
  const message = e instanceof RangeError ? "the document nests too deeply" : e instanceof ReferenceError ? `more than ${MAX_ALIASES} alias expansions (a YAML "billion laughs" is refused)` : (e as Error).message;
  return { severity: "error", path: "", message: `YAML: ${message}` };
}

/** Every key or string value with a control character, as a problem and a repair issue. */
function controlProblems(raw: unknown, lineOf: (p: ReadonlyArray<PropertyKey>) => number | undefined) {
  const found: Array<{ problem: Problem; issue: z.core.$ZodIssue }> = [];
  const visit = (v: unknown, path: PropertyKey[]) => {
    if (typeof v === "string") {
      const c = controlChar(v);
      if (c) add(path, `contains the control character ${c}`, "spec values are single-line text without control characters");
    } else if (Array.isArray(v)) v.forEach((x, i) => visit(x, [...path, i]));
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        const c = controlChar(k);
        if (c) add([...path, k], `the key contains the control character ${c}`);
        else visit(x, [...path, k]);
      }
    }
  };
  const add = (path: PropertyKey[], message: string, hint?: string) =>
    found.push({
      problem: { severity: "error", path: formatPath(path), message, hint, line: lineOf(path) },
      issue: { code: "custom", path, message, input: undefined } as z.core.$ZodIssue,
    });
  visit(raw, []);
  return found;
}

export function hasErrors(problems: readonly Problem[]): boolean {
  return problems.some((p) => p.severity === "error");
}

function toProblem(issue: z.core.$ZodIssue, lineOf: (p: ReadonlyArray<PropertyKey>) => number | undefined): Problem {
  const path = formatPath(issue.path);
  const line = lineOf(issue.path);
  switch (issue.code) {
    case "unrecognized_keys": {
      const known = knownKeys(issue.path);
      const key = issue.keys[0]!;
      const keyPath = path ? `${path}.${key}` : key;
      return {
        severity: "error",
        path: keyPath,
        message: `unknown key "${issue.keys.join('", "')}"`,
        hint: didYouMean(key, known) ?? (known.length ? `known keys: ${known.join(", ")}` : undefined),
        line: lineOf([...issue.path, key]) ?? line,
      };
    }
    case "invalid_value": {
      const values = issue.values.map(String);
      const bad = issue.input === undefined ? undefined : String(issue.input);
      if (issue.path[0] === "apiVersion") {
        return { severity: "error", path, message: `unsupported apiVersion ${bad ?? "(missing)"}`, hint: `use ${API_VERSION}`, line };
      }
      return {
        severity: "error",
        path,
        message: `${bad === undefined ? "missing value" : `"${bad}" is not allowed`}`,
        hint: (bad && didYouMean(bad, values)) || `one of: ${values.join(", ")}`,
        line,
      };
    }
    case "invalid_type":
      return {
        severity: "error",
        path,
        message: issue.input === undefined ? "is required" : `expected ${issue.expected}, got ${describe(issue.input)}`,
        line,
      };
    default:
      return { severity: "error", path, message: issue.message, line };
  }
}

/** List items dropped by repair(), by the list's path in the original document. */
type Removed = Map<string, number[]>;

/** Maps a path in the repaired document back to the user's document. */
function originalPath(path: ReadonlyArray<PropertyKey>, removed: Removed): PropertyKey[] {
  const out: PropertyKey[] = [];
  for (const seg of path) {
    if (typeof seg === "number") {
      let i = seg;
      for (const r of [...(removed.get(formatPath(out)) ?? [])].sort((a, b) => a - b)) if (r <= i) i++;
      out.push(i);
    } else out.push(seg);
  }
  return out;
}

/** A copy of the input without the values the issues point at. */
function repair(raw: unknown, issues: readonly z.core.$ZodIssue[], removed: Removed, names: Set<string>): unknown {
  const copy = structuredClone(raw);
  const removals: Array<[unknown[], number, PropertyKey[]]> = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      const obj = getAt(copy, issue.path) as Record<string, unknown> | undefined;
      if (obj && typeof obj === "object") for (const k of issue.keys) delete obj[k];
      continue;
    }
    let path = issue.path;
    // a broken name is remembered: references to it elsewhere are echoes of this one mistake
    const bad = getAt(copy, path);
    if (path.at(-1) === "name" && typeof bad === "string" && bad.length <= 253) names.add(bad);
    // A value that is missing or emptied can't be dropped: drop the list item around it.
    if (getAt(copy, path) === undefined || (Array.isArray(getAt(copy, path)) && issue.code === "too_small")) {
      const i = path.findLastIndex((p) => typeof p === "number");
      if (i >= 0) path = path.slice(0, i + 1);
    }
    const key = path.at(-1);
    const parent = getAt(copy, path.slice(0, -1));
    if (Array.isArray(parent) && typeof key === "number") {
      if (!removals.some(([a, k]) => a === parent && k === key)) removals.push([parent, key, [...path]]);
    }
    else if (parent && typeof parent === "object" && key !== undefined) delete (parent as Record<PropertyKey, unknown>)[key];
  }
  for (const [, , at] of removals) {
    const original = originalPath(at, removed);
    const list = formatPath(original.slice(0, -1));
    removed.set(list, [...(removed.get(list) ?? []), original.at(-1) as number]);
  }
  for (const [arr, i] of removals) {
    const name = (arr[i] as { name?: unknown } | undefined)?.name;
    if (typeof name === "string" && name.length <= 253) names.add(name);
  }
  removals.sort((a, b) => b[1] - a[1]).forEach(([arr, i]) => arr.splice(i, 1));
  return copy;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return `${typeof v} ${JSON.stringify(v)}`;
}

function getAt(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let cur = root;
  for (const p of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

/** The keys the schema allows at a path, for "did you mean" on unknown keys. */
function knownKeys(path: ReadonlyArray<PropertyKey>): string[] {
  let schema: z.ZodType = SpecSchema;
  for (const p of path) {
    schema = unwrap(schema);
    if (schema instanceof z.ZodObject) schema = (schema.shape as Record<string, z.ZodType>)[String(p)] ?? schema;
    else if (schema instanceof z.ZodArray) schema = schema.element as z.ZodType;
    else if (schema instanceof z.ZodRecord) schema = schema.valueType as z.ZodType;
  }
  schema = unwrap(schema);
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s instanceof z.ZodOptional || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
  return s;
}

function pathArray(path: string): PropertyKey[] {
  const out: PropertyKey[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}
