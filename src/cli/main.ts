// The fmc command line. The only code that prints for people and picks exit codes;
// progress and problems go to stderr, results to stdout.
import { defineCommand, runCommand, showUsage, type ArgsDef, type CommandDef } from "citty";
import { FmcError } from "../errors.js";
import { InvalidSpec } from "../project.js";
import { dim, printProblems, red } from "./ui.js";

// Commands load on demand: `fmc apply` never pays for the renderers of Kubernetes
// manifests, and `fmc render` never loads ssh2.
const spec = () => import("./spec-commands.js");
const engine = () => import("./apply-commands.js");

export const fmc = defineCommand({
  meta: {
    name: "fmc",
    version: "0.1.0",
    description: "FlatcarMicroCloud: one spec for a highly available K3s on a few servers and VMs",
  },
  subCommands: {
    init: () => spec().then((m) => m.init),
    validate: () => spec().then((m) => m.validate),
    render: () => spec().then((m) => m.render),
    schema: () => spec().then((m) => m.schema),
    docs: () => spec().then((m) => m.docs),
    plan: () => engine().then((m) => m.plan),
    apply: () => engine().then((m) => m.apply),
    lab: () => import("./lab-commands.js").then((m) => m.lab),
    secrets: () => import("./secrets-commands.js").then((m) => m.secrets),
    wireguard: () => import("./wireguard-commands.js").then((m) => m.wireguard),
    backup: () => import("./backup-commands.js").then((m) => m.backup),
    restore: () => import("./backup-commands.js").then((m) => m.restore),
    etcd: () => import("./etcd-commands.js").then((m) => m.etcd),
    kubeconfig: () => import("./kubeconfig-commands.js").then((m) => m.kubeconfig),
    node: () => import("./node-commands.js").then((m) => m.node),
    upgrade: () => import("./upgrade-commands.js").then((m) => m.upgrade),
    bundle: () => import("./bundle-commands.js").then((m) => m.bundleCommand),
    certs: () => import("./certs-commands.js").then((m) => m.certs),
    reset: () => import("./reset-commands.js").then((m) => m.reset),
    provision: () => import("./provision-commands.js").then((m) => m.provisionCommand),
  },
});

/** Follows positional words down the subcommand tree. */
async function resolveCommand(cmd: CommandDef, argv: string[]): Promise<[CommandDef, CommandDef | undefined, string[]]> {
  let current = cmd;
  let parent: CommandDef | undefined;
  let rest = argv;
  for (;;) {
    const subs = (await current.subCommands) as Record<string, CommandDef | (() => Promise<CommandDef>)> | undefined;
    const word = rest.find((a) => !a.startsWith("-"));
    if (!subs || word === undefined || !(word in subs)) return [current, parent, rest];
    parent = current;
    const sub = subs[word]!;
    current = typeof sub === "function" ? await sub() : sub;
    rest = rest.filter((a) => a !== word);
  }
}

/** Every name an option answers to: its own and its aliases, for the options `which` selects. */
function optionNames(args: ArgsDef, which: (def: ArgsDef[string]) => boolean = () => true): Set<string> {
  const names = new Set<string>();
  for (const [name, def] of Object.entries(args)) {
    if (!which(def)) continue;
    names.add(name);
    for (const a of ["alias" in def ? (def.alias ?? []) : []].flat()) names.add(a);
  }
  return names;
}

/** Words that are neither options, option values nor allowed positionals. */
function surplusWords(args: ArgsDef, argv: string[]): string[] {
  const takesValue = optionNames(args, (d) => d.type === "string" || d.type === "enum");
  const allowed = Object.values(args).filter((d) => d.type === "positional").length;
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      words.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("-") && a !== "-") {
      if (!a.includes("=") && takesValue.has(a.replace(/^--?/, ""))) i++;
      continue;
    }
    words.push(a);
  }
  return words.slice(allowed);
}

function unknownFlags(args: ArgsDef, argv: string[]): string[] {
  const known = new Set(["help", "h", ...optionNames(args)]);
  return argv
    .filter((a) => a.startsWith("-") && a !== "-" && a !== "--")
    .map((a) => a.replace(/^--?(no-)?/, "").split("=")[0]!)
    .filter((n) => !known.has(n));
}

export async function main(argv: string[]): Promise<void> {
  // a reader that stops early (fmc … | head) is not an error
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  try {
    const [cmd, parent, rest] = await resolveCommand(fmc, argv);
    // after "--" the words belong to the command a passing-through command runs (lab exec)
    const own = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
    const passThrough = !!((await cmd.meta) as { passThrough?: boolean } | undefined)?.passThrough;
    if (own.includes("--help") || own.includes("-h") || (cmd === fmc && !argv.some((a) => a === "--version"))) {
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
    if (!cmd.run) {
      await showUsage(cmd, parent);
      return;
    }
    const argsDef = ((await cmd.args) ?? {}) as ArgsDef;
    const usage = `see: fmc ${parent && parent !== fmc ? `${((await parent.meta) as { name?: string })?.name} ` : ""}${((await cmd.meta) as { name?: string })?.name ?? ""} --help`;
    const bad = unknownFlags(argsDef, passThrough ? own : argv);
    if (bad.length) throw new FmcError("USAGE", `unknown option: --${bad[0]}`, usage);
    const surplus = surplusWords(argsDef, passThrough && rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest);
    if (surplus.length) throw new FmcError("USAGE", `unexpected argument: ${surplus[0]}`, usage);
    await runCommand(fmc, { rawArgs: argv });
  } catch (e) {
    if (e instanceof InvalidSpec) {
      printProblems(e.problems);
      process.stderr.write(red(`${e.message}; nothing was written\n`));
    } else if (e instanceof FmcError) {
      process.stderr.write(`${red(`error[${e.code}]`)} ${e.message}\n${e.hint ? `    ${dim("hint:")} ${e.hint}\n` : ""}`);
    } else if ((e as Error).name === "CLIError") {
      // citty's own argument errors (a missing positional): a usage error, not a crash
      process.stderr.write(`${red("error[USAGE]")} ${(e as Error).message}\n    ${dim("hint:")} fmc ${argv.filter((a) => !a.startsWith("-")).slice(0, 2).join(" ")} --help\n`);
    } else {
      process.stderr.write(`${red("internal error")} ${(e as Error).stack ?? String(e)}\n`);
    }
    process.exitCode = 1;
  }
}
