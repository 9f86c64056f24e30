// The lab's K3s stand-in is a shell script of its own (src/lab/k3s-standin-script.ts): it is
// read and checked as one, by the shell's parser and by shellcheck (warnings are errors).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { k3sStandIn } from "../../src/lab/k3s-standin-script.js";
import { tempDir } from "../helpers.js";

const haveShellcheck = spawnSync("sh", ["-c", "command -v shellcheck"]).status === 0;

test("the K3s stand-in parses as POSIX sh and passes shellcheck at warning level", { skip: haveShellcheck ? false : "shellcheck is not installed (CI installs it)" }, (t) => {
  const dir = tempDir(t);
  const script = join(dir, "k3s");
  const text = k3sStandIn("v1.33.4+k3s1");
  assert.match(text, /^#!\/bin\/sh\n/);
  writeFileSync(script, text, { mode: 0o755 });
  const parsed = spawnSync("sh", ["-n", script], { encoding: "utf8" });
  assert.equal(parsed.status, 0, parsed.stderr);
  const checked = spawnSync("shellcheck", ["-s", "sh", "-S", "warning", "-f", "gcc", script], { encoding: "utf8" });
  assert.equal(checked.status, 0, checked.stdout + checked.stderr);
  // the check does catch what it claims to: a broken copy fails both
  writeFileSync(script, text.replace(/\nesac\n(?![\s\S]*\nesac\n)/, "\n"), { mode: 0o755 });
  assert.notEqual(spawnSync("sh", ["-n", script]).status, 0, "an unclosed case is a parse error");
  writeFileSync(script, `${text}\nfor f in $(ls /tmp); do echo "$f"; done\n`, { mode: 0o755 });
  assert.notEqual(spawnSync("shellcheck", ["-s", "sh", "-S", "warning", script]).status, 0, "shellcheck flags a loop over ls");
});
