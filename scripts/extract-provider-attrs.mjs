#!/usr/bin/env node
// Extracts resource attribute names (nested blocks as "block.attr") from a Terraform
// provider's Go sources, so tests can check our *.tf.json against the real schema
// without Terraform. Run once against an upstream checkout; the output is committed
// under test/fixtures/ with the version it came from.
//
//   node scripts/extract-provider-attrs.mjs <git-dir> <ref> <label> <resource>=<path> ...
import { execFileSync } from "node:child_process";

const [gitDir, ref, label, ...pairs] = process.argv.slice(2);
if (!gitDir || !ref || !label || pairs.length === 0) {
  console.error("usage: extract-provider-attrs.mjs <git-dir> <ref> <label> <resource>=<path> ...");
  process.exit(1);
}
const keyLine = /^(\t+)"([a-z0-9_]+)": (?:\{|schema\.\w+\{)\s*(?:\/\/.*)?$/;
const resources = {};
for (const pair of pairs) {
  const [resource, path] = pair.split("=");
  const src = execFileSync("git", ["--git-dir", gitDir, "show", `${ref}:${path}`], { encoding: "utf8" });
  const stack = []; // [depth, name]
  const attrs = new Map(); // path -> required
  let current = null;
  for (const line of src.split("\n")) {
    const m = keyLine.exec(line);
    if (m) {
      const depth = m[1].length;
      while (stack.length && stack[stack.length - 1][0] >= depth) stack.pop();
      stack.push([depth, m[2]]);
      current = stack.map((s) => s[1]).join(".");
      attrs.set(current, false);
    } else if (current && /^\t+Required:\s+true,/.test(line)) {
      const depth = line.match(/^\t+/)[0].length;
      if (stack.length && stack[stack.length - 1][0] === depth - 1) attrs.set(current, true);
    }
  }
  // the outermost key level is the attribute level; drop anything shallower (none expected)
  resources[resource] = {
    attributes: [...attrs.keys()].sort(),
    required: [...attrs].filter(([, r]) => r).map(([k]) => k).sort(),
  };
}
process.stdout.write(JSON.stringify({ source: label, ref, resources }, null, 2) + "\n");
