// Every Ignition config fmc renders (the seed and every example) passes the real Ignition's
// own check: `ignition-validate` from Debian 12's `ignition` package (Ignition 2.14, which
// knows specs up to 3.3.0 and refuses 3.4.0). Skipped, with the reason, only where the tool
// is absent; CI installs the package.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderAll } from "../../src/render/index.js";
import type { ClusterContext } from "../../src/state/context.js";
import { contextFor, ROOT, tempDir } from "../helpers.js";

const TOOL = "ignition-validate";
const present = spawnSync("sh", ["-c", `command -v ${TOOL}`]).status === 0;
const skip = present ? false : `${TOOL} is not installed (Debian's ignition package; .ci/run installs it)`;

const contexts: Array<[string, ClusterContext]> = [
  ["seed", contextFor()],
  ...readdirSync(join(ROOT, "examples")).map((d): [string, ClusterContext] => [`examples/${d}`, contextFor(readFileSync(join(ROOT, "examples", d, "cluster.yaml"), "utf8"))]),
];

function validate(path: string): { status: number | null; output: string } {
  const r = spawnSync(TOOL, [path], { encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

test("every rendered .ign of the seed and the examples passes the real ignition-validate", { skip }, (t) => {
  const dir = tempDir(t, "fmc-ign-");
  let checked = 0;
  for (const [name, ctx] of contexts) {
    for (const a of renderAll(ctx).filter((x) => x.path.endsWith(".ign"))) {
      const path = join(dir, `${name.replace("/", "-")}-${a.path.split("/").pop()}`);
      writeFileSync(path, a.content);
      const r = validate(path);
      assert.equal(r.status, 0, `${name} ${a.path}: ${r.output}`);
      checked++;
    }
  }
  assert.ok(checked >= 7, `only ${checked} Ignition configs rendered`);
});

test("the check is not a rubber stamp: ignition-validate refuses spec 3.4.0 and a wrong type", { skip }, (t) => {
  const dir = tempDir(t, "fmc-ign-");
  const ign = JSON.parse(renderAll(contextFor()).find((a) => a.path === "ignition/master1.ign")!.content) as { ignition: { version: string }; storage: { files: Array<{ mode: unknown }> } };
  const newer = join(dir, "newer.ign");
  writeFileSync(newer, JSON.stringify({ ...ign, ignition: { version: "3.4.0" } }));
  assert.notEqual(validate(newer).status, 0, "Ignition 2.14 knows no spec 3.4.0");
  const broken = structuredClone(ign);
  broken.storage.files[0]!.mode = "0644";
  const bad = join(dir, "bad.ign");
  writeFileSync(bad, JSON.stringify(broken));
  assert.notEqual(validate(bad).status, 0);
});
