// Builds the command line fmc starts from: dist/cli/fmc.cjs, every module of src/cli/main.ts
// and the small libraries it needs in one file, and beside it a V8 code cache
// (fmc.cjs.cache) made by one run of `fmc validate` on the seed spec. bin/fmc.js compiles the
// bundle with that cache, which saves Node resolving and compiling ≈ 200 modules on every
// command (about half of what `fmc validate` took before).
//
// Left outside the bundle, loaded from node_modules when a command needs them: ssh2 (a
// native addon inside), and the big libraries only rendering and `bundle`/`wireguard`
// commands use. The library entry (dist/index.js, from tsc) is not bundled.
//
//   node scripts/bundle.mjs           (npm run build runs it after tsc)
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "..");
const OUT = join(ROOT, "dist/cli/fmc.cjs");
const CACHE = `${OUT}.cache`;

rmSync(CACHE, { force: true });
await build({
  entryPoints: [join(ROOT, "src/cli/main.ts")],
  outfile: OUT,
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  external: ["ssh2", "cpu-features", "kubernetes-models", "@kubernetes-models/*", "ajv", "ajv-*", "qrcode-generator"],
  // main.ts finds package.json from its own URL: in the bundle that is the bundle's URL
  // (dist/cli/fmc.cjs, two levels below package.json like dist/cli/main.js)
  define: { "import.meta.url": "__fmcModuleUrl" },
  banner: { js: 'const __fmcModuleUrl = require("node:url").pathToFileURL(__filename).href;' },
  logLevel: "warning",
});

// One representative run fills the cache: init writes the seed spec, validate reads it.
const work = mkdtempSync(join(tmpdir(), "fmc-bundle-"));
try {
  const fmc = (env, ...args) => {
    const r = spawnSync(process.execPath, [join(ROOT, "bin/fmc.js"), ...args], { cwd: work, encoding: "utf8", env: { ...process.env, ...env } });
    if (r.status !== 0) throw new Error(`fmc ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  };
  fmc({}, "init", "-o", "cluster.yaml");
  fmc({ FMC_WRITE_CODE_CACHE: "1" }, "validate", "cluster.yaml");
} finally {
  rmSync(work, { recursive: true, force: true });
}
const kib = (f) => `${Math.round(statSync(f).size / 1024)} KiB`;
console.log(`bundle: dist/cli/fmc.cjs ${kib(OUT)}, code cache ${kib(CACHE)}`);
