// The bad-spec corpus (test/fixtures/bad-specs.yaml): every case is rejected with exactly
// one error at the path it names, without throwing and without returning a spec.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, parseDocument } from "yaml";
import { loadSpec } from "../../src/model/load.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { ROOT } from "../helpers.js";

interface Case {
  name: string;
  set?: Record<string, unknown>;
  delete?: string[];
  text?: string;
  error: string;
  match?: string;
  errors?: "any";
  noWarning?: string;
}

const cases = parse(readFileSync(join(ROOT, "test/fixtures/bad-specs.yaml"), "utf8")) as Case[];

/** "a.b[2].c" -> ["a", "b", 2, "c"] */
const pathOf = (p: string) => [...p.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!));

function specText(c: Case): string {
  if (c.text !== undefined) return c.text;
  const doc = parseDocument(SEED_YAML);
  for (const [path, value] of Object.entries(c.set ?? {})) {
    // missing mappings are created; a missing list item would be a mistake in the case
    assert.ok(doc.hasIn(pathOf(path).slice(0, -1)) || pathOf(path).every((k) => typeof k === "string"), `${c.name}: the seed has no ${path}'s parent`);
    doc.setIn(pathOf(path), value);
  }
  for (const path of c.delete ?? []) {
    assert.ok(doc.hasIn(pathOf(path)), `${c.name}: the seed has no ${path}`);
    doc.deleteIn(pathOf(path));
  }
  return doc.toString();
}

test("the corpus is large and every case names a distinct mistake", () => {
  assert.ok(cases.length >= 50, `only ${cases.length} cases`);
  assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
});

for (const c of cases) {
  test(`bad spec: ${c.name}`, () => {
    const r = loadSpec(specText(c));
    const errors = r.problems.filter((p) => p.severity === "error");
    assert.equal(r.spec, undefined, "no spec is returned");
    const at = errors.filter((e) => e.path === c.error);
    assert.ok(at.length === 1, `expected one error at "${c.error}", got:\n${errors.map((e) => `  ${e.path}: ${e.message}`).join("\n")}`);
    if (c.errors !== "any") assert.equal(errors.length, 1, `one mistake, one error; got:\n${errors.map((e) => `  ${e.path}: ${e.message}`).join("\n")}`);
    if (c.match) assert.match(at[0]!.message + (at[0]!.hint ? ` ${at[0]!.hint}` : ""), new RegExp(c.match));
    if (c.error !== "") assert.equal(typeof at[0]!.line, "number", "the error carries a line");
    if (c.noWarning) {
      const echo = r.problems.find((p) => p.severity === "warning" && new RegExp(c.noWarning!).test(p.message));
      assert.equal(echo, undefined, `a false warning: ${echo?.path}: ${echo?.message}`);
    }
  });
}

test("deeply nested YAML is refused with a message, not a stack overflow", () => {
  const deep = `apiVersion: fmc.dev/v1alpha1\nx: ${"[".repeat(200_000)}${"]".repeat(200_000)}\n`;
  const r = loadSpec(deep);
  assert.equal(r.spec, undefined);
  assert.ok(r.problems.some((p) => p.severity === "error" && p.path === ""), JSON.stringify(r.problems.slice(0, 2)));
});

test("a 1,000-host spec loads: the list bounds leave room for real clusters", () => {
  const hosts = Array.from({ length: 1000 }, (_, i) => `  - { name: n${i}, roles: [k3s-agent], os: flatcar, address: 10.17.${8 + Math.floor(i / 250)}.${(i % 250) + 2} }`);
  const text = SEED_YAML.replace(/^hosts:\n/m, `hosts:\n${hosts.join("\n")}\n`).replace("{ name: lb,      cidr: 10.17.5.0/24, libvirt: bridge }", "{ name: lb,      cidr: 10.17.5.0/24, libvirt: bridge }\n    - { name: big, cidr: 10.17.8.0/22 }");
  const r = loadSpec(text);
  assert.deepEqual(r.problems.filter((p) => p.severity === "error"), []);
  assert.equal(r.spec?.hosts.length, 1015);
});
