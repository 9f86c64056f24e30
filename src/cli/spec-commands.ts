// Commands on the spec itself: init, validate, render, schema, docs.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { defineCommand } from "citty";
import { FmcError } from "../errors.js";
import { context, load } from "../project.js";
import { SEED_YAML } from "../model/seed.js";
// the renderers and the schema writer load only for the commands that use them (validate stays light)
const renderer = async () => ({ ...(await import("../render/index.js")), ...(await import("../render/write.js")) });
const schemaWriter = () => import("../model/jsonschema.js");
import { bold, dim, fileArg, n, printProblems, specArg, specFileOf, specName, stateArg } from "./ui.js";

export const init = defineCommand({
  meta: { name: "init", description: "Write the seed topology as a commented spec to edit" },
  args: {
    out: { type: "string", alias: "o", description: "where to write it", default: "cluster.yaml" },
    force: { type: "boolean", description: "overwrite an existing file", default: false },
  },
  run({ args }) {
    const out = resolve(args.out);
    if (existsSync(out) && !args.force) throw new FmcError("EXISTS", `${args.out} already exists`, "use --force to overwrite it");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, SEED_YAML);
    process.stdout.write(`wrote ${args.out}: the seed topology (15 hosts). Next: edit it, then fmc validate -f ${args.out}\n`);
  },
});

export const validate = defineCommand({
  meta: { name: "validate", description: "Check the spec and report every problem with its path" },
  args: { spec: specArg, file: fileArg, json: { type: "boolean", description: "machine-readable output", default: false } },
  run({ args }) {
    const loaded = load(specFileOf(args));
    const errors = loaded.problems.filter((p) => p.severity === "error").length;
    const warnings = loaded.problems.length - errors;
    if (args.json) {
      process.stdout.write(JSON.stringify({ valid: errors === 0, spec: loaded.source.file ?? null, problems: loaded.problems }, null, 2) + "\n");
    } else {
      printProblems(loaded.problems);
      if (loaded.spec && errors === 0) {
        const s = loaded.spec;
        const servers = s.hosts.filter((h) => h.roles.includes("k3s-server")).length;
        const agents = s.hosts.filter((h) => h.roles.includes("k3s-agent")).length;
        process.stdout.write(
          `${specName(loaded.source.file)}: valid — ${n(s.hosts.length, "host")} (${n(servers, "server")}, ${n(agents, "agent")}), ${n(s.vips.length, "VIP")}, ${n(s.network.subnets.length, "subnet")}${warnings ? `, ${n(warnings, "warning")}` : ""}\n`,
        );
      } else {
        process.stderr.write(`${specName(loaded.source.file)}: ${errors} error(s), ${warnings} warning(s)\n`);
      }
    }
    process.exitCode = errors === 0 ? 0 : 1;
  },
});

export const render = defineCommand({
  meta: { name: "render", description: "Render every artifact (Terraform, Ignition, K3s, HAProxy, …) into a directory" },
  args: {
    spec: specArg,
    file: fileArg,
    out: { type: "string", alias: "o", description: "output directory (fmc only ever replaces or removes files it wrote there)", default: "out" },
    state: stateArg,
  },
  async run({ args }) {
    const started = performance.now();
    const { checkOutDir, renderAll, summarize, writeArtifacts } = await renderer();
    checkOutDir(args.out); // before any secret is generated
    const { ctx, loaded, stateDir } = context({ file: specFileOf(args), stateDir: args.state });
    printProblems(loaded.problems); // warnings only: errors stop before this
    const artifacts = renderAll(ctx);
    const result = writeArtifacts(args.out, artifacts);
    const secret = artifacts.filter((a) => a.secret).length;
    process.stdout.write(`${bold(args.out + "/")} ${dim(`from ${specName(loaded.source.file)}`)}\n`);
    for (const line of summarize(artifacts)) process.stdout.write(`${line}\n`);
    process.stdout.write(
      `${artifacts.length} files (${result.written} written, ${result.unchanged} unchanged) in ${Math.round(performance.now() - started)} ms; ${secret} hold secrets (0600, listed in ${args.out}/.gitignore); secrets kept in ${relative(process.cwd(), stateDir) || stateDir}\n`,
    );
    if (result.removed.length) process.stdout.write(`removed ${n(result.removed.length, "file")} fmc wrote before and no longer renders: ${result.removed.join(", ")}\n`);
    if (result.kept.length) process.stdout.write(dim(`left alone ${n(result.kept.length, "file")} fmc did not write: ${result.kept.slice(0, 8).join(", ")}${result.kept.length > 8 ? ", …" : ""}\n`));
  },
});

export const schema = defineCommand({
  meta: { name: "schema", description: "Print the spec's JSON Schema (for editor completion)" },
  async run() {
    const { specJsonSchema } = await schemaWriter();
    process.stdout.write(JSON.stringify(specJsonSchema(), null, 2) + "\n");
  },
});

export const docs = defineCommand({
  meta: { name: "docs", description: "Write docs/spec.md, the spec reference generated from the schema" },
  args: { out: { type: "string", alias: "o", description: "output file", default: "docs/spec.md" } },
  async run({ args }) {
    const { specMarkdown } = await schemaWriter();
    mkdirSync(dirname(resolve(args.out)), { recursive: true });
    writeFileSync(args.out, specMarkdown());
    process.stdout.write(`wrote ${args.out}\n`);
  },
});

