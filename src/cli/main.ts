// The fmc command line. The only code that prints for people and picks exit codes;
// progress and problems go to stderr, results to stdout.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { defineCommand, runCommand, showUsage, type ArgsDef, type CommandDef } from "citty";
import { FmcError, type Problem } from "../errors.js";
import { context, InvalidSpec, load } from "../project.js";
import { hasErrors } from "../spec/load.js";
import { SEED_YAML } from "../spec/seed.js";
import { specJsonSchema, specMarkdown } from "../spec/jsonschema.js";
import { renderAll } from "../render/index.js";
import { summarize, writeArtifacts } from "../render/write.js";

const color = !process.env.NO_COLOR && process.stderr.isTTY;
const paint = (code: number) => (s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const red = paint(31);
const yellow = paint(33);
const dim = paint(2);
const bold = paint(1);

const fileArg = { type: "string", alias: "f", description: "cluster spec (default: ./cluster.yaml, else the built-in seed topology)" } as const;
const stateArg = { type: "string", description: "state directory for secrets (default: .fmc/ next to the spec)" } as const;

export function formatProblem(p: Problem): string {
  const where = `${p.path || "(spec)"}${p.line ? dim(` (line ${p.line})`) : ""}`;
  const tag = p.severity === "error" ? red("error") : yellow("warning");
  return `${tag} ${where}: ${p.message}${p.hint ? `\n    ${dim("hint:")} ${p.hint}` : ""}`;
}

function printProblems(problems: readonly Problem[]) {
  for (const p of problems) process.stderr.write(formatProblem(p) + "\n");
}

const n = (count: number, word: string) => `${count} ${word}${count === 1 ? "" : "s"}`;

function specName(file: string | undefined): string {
  return file ? relative(process.cwd(), file) || file : "built-in seed topology";
}

const init = defineCommand({
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

const validate = defineCommand({
  meta: { name: "validate", description: "Check the spec and report every problem with its path" },
  args: { file: fileArg, json: { type: "boolean", description: "machine-readable output", default: false } },
  run({ args }) {
    const loaded = load(args.file);
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

const render = defineCommand({
  meta: { name: "render", description: "Render every artifact (Terraform, Ignition, K3s, HAProxy, …) into a directory" },
  args: {
    file: fileArg,
    out: { type: "string", alias: "o", description: "output directory", default: "out" },
    state: stateArg,
  },
  run({ args }) {
    const started = performance.now();
    const { ctx, loaded, stateDir } = context({ file: args.file, stateDir: args.state });
    printProblems(loaded.problems); // warnings only: errors stop before this
    const artifacts = renderAll(ctx);
    writeArtifacts(args.out, artifacts);
    const secret = artifacts.filter((a) => a.secret).length;
    process.stdout.write(`${bold(args.out + "/")} ${dim(`from ${specName(loaded.source.file)}`)}\n`);
    for (const line of summarize(artifacts)) process.stdout.write(`${line}\n`);
    process.stdout.write(
      `${artifacts.length} files in ${Math.round(performance.now() - started)} ms; ${secret} hold secrets (0600, listed in ${args.out}/.gitignore); secrets kept in ${relative(process.cwd(), stateDir) || stateDir}\n`,
    );
  },
});

const schema = defineCommand({
  meta: { name: "schema", description: "Print the spec's JSON Schema (for editor completion)" },
  run() {
    process.stdout.write(JSON.stringify(specJsonSchema(), null, 2) + "\n");
  },
});

const docs = defineCommand({
  meta: { name: "docs", description: "Write docs/spec.md, the spec reference generated from the schema" },
  args: { out: { type: "string", alias: "o", description: "output file", default: "docs/spec.md" } },
  run({ args }) {
    mkdirSync(dirname(resolve(args.out)), { recursive: true });
    writeFileSync(args.out, specMarkdown());
    process.stdout.write(`wrote ${args.out}\n`);
  },
});

export const fmc = defineCommand({
  meta: {
    name: "fmc",
    version: "0.1.0",
    description: "FlatcarMicroCloud: one spec for a highly available K3s on a few servers and VMs",
  },
  subCommands: { init, validate, render, schema, docs },
});

/** Follows positional words down the subcommand tree. */
async function resolveCommand(cmd: CommandDef, argv: string[]): Promise<[CommandDef, CommandDef | undefined, string[]]> {
  let current = cmd;
  let parent: CommandDef | undefined;
  let rest = argv;
  for (;;) {
    const subs = (await current.subCommands) as Record<string, CommandDef> | undefined;
    const word = rest.find((a) => !a.startsWith("-"));
    if (!subs || word === undefined || !(word in subs)) return [current, parent, rest];
    parent = current;
    current = subs[word]!;
    rest = rest.filter((a) => a !== word);
  }
}

function unknownFlags(args: ArgsDef, argv: string[]): string[] {
  const known = new Set<string>(["help", "h"]);
  for (const [name, def] of Object.entries(args)) {
    known.add(name);
    for (const a of ["alias" in def ? (def.alias ?? []) : []].flat()) known.add(a);
  }
  return argv
    .filter((a) => a.startsWith("-") && a !== "-" && a !== "--")
    .map((a) => a.replace(/^--?(no-)?/, "").split("=")[0]!)
    .filter((n) => !known.has(n));
}

export async function main(argv: string[]): Promise<void> {
  try {
    const [cmd, parent] = await resolveCommand(fmc, argv);
    if (argv.includes("--help") || argv.includes("-h") || (cmd === fmc && !argv.some((a) => a === "--version"))) {
      await showUsage(cmd, parent);
      if (cmd === fmc && argv.length > 0 && !argv.includes("--help") && !argv.includes("-h")) {
        process.stderr.write(red(`unknown command: ${argv.find((a) => !a.startsWith("-")) ?? argv[0]}\n`));
        process.exitCode = 1;
      }
      return;
    }
    if (cmd === fmc) {
      process.stdout.write("0.1.0\n");
      return;
    }
    const bad = unknownFlags(((await cmd.args) ?? {}) as ArgsDef, argv);
    if (bad.length) throw new FmcError("USAGE", `unknown option: --${bad[0]}`, `see: fmc ${(await cmd.meta as { name?: string })?.name ?? ""} --help`);
    await runCommand(fmc, { rawArgs: argv });
  } catch (e) {
    if (e instanceof InvalidSpec) {
      printProblems(e.problems);
      process.stderr.write(red(`${e.message}; nothing was written\n`));
    } else if (e instanceof FmcError) {
      process.stderr.write(`${red(`error[${e.code}]`)} ${e.message}\n${e.hint ? `    ${dim("hint:")} ${e.hint}\n` : ""}`);
    } else {
      process.stderr.write(`${red("internal error")} ${(e as Error).stack ?? String(e)}\n`);
    }
    process.exitCode = 1;
  }
}
