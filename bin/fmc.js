#!/usr/bin/env node
// Starts fmc from its bundled command line (dist/cli/fmc.cjs, see scripts/bundle.mjs),
// compiled with the V8 code cache stored beside it when there is one that fits. Without a
// bundle (a build without scripts/bundle.mjs), or with FMC_UNBUNDLED=1 (stack traces that
// name each module), the modules tsc wrote are loaded instead.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";

const argv = process.argv.slice(2);
const bundle = fileURLToPath(new URL("../dist/cli/fmc.cjs", import.meta.url));

if (process.env.FMC_UNBUNDLED === "1" || !existsSync(bundle)) {
  const { main } = await import("../dist/cli/main.js");
  main(argv);
} else {
  const cacheFile = `${bundle}.cache`;
  const cachedData = existsSync(cacheFile) ? readFileSync(cacheFile) : undefined;
  const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(bundle, "utf8")}\n})`;
  const script = new Script(source, { filename: bundle, cachedData });
  const module = { exports: {} };
  script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, dirname(bundle));
  if (process.env.FMC_WRITE_CODE_CACHE === "1") {
    // the build's warm-up run: everything compiled by the time it exits goes into the cache
    process.on("exit", () => {
      writeFileSync(`${cacheFile}.tmp`, script.createCachedData());
      renameSync(`${cacheFile}.tmp`, cacheFile);
    });
  }
  module.exports.main(argv);
}
