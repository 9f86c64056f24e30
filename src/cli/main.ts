// The fmc command line. The only code that prints for people and picks exit codes;
// progress and problems go to stderr, results to stdout.
//
// Start-up is kept short: this module loads no command and no library (citty included)
// until a command runs or shows its own help. `fmc --help` is drawn from the static table
// in commands.ts; `fmc validate` loads the spec commands and nothing for the hosts.
import { readFileSync } from "node:fs";
import type { ArgsDef, CommandDef } from "citty";
import { didYouMean, FmcError, type Problem } from "../errors.js";
import { COMMAND_NAMES, COMMANDS, GROUP_TITLES, type CommandGroup } from "./commands.js";
import { bold, cyan, dim, plainWhenNotTerminal, printProblems, red, underline } from "./ui.js";

/** fmc's version: package.json's (dist/cli/ and src/cli/ both sit two levels below it). */
const VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

const DESCRIPTION = "FlatcarMicroCloud: one spec for a highly available K3s on a few servers and VMs";

type Loader = () => Promise<CommandDef<any>>;

/** The root command: its subcommands load on demand (fmc apply never loads the renderers, fmc render never loads ssh2). */
export const fmc = {
  meta: { name: "fmc", version: VERSION, description: DESCRIPTION },
  subCommands: Object.fromEntries(COMMAND_NAMES.map((name) => [name, COMMANDS[name].load])) as Record<string, CommandDef<any> | Loader>,
} satisfies CommandDef<any>;

const resolve = async <T>(v: T | Promise<T> | (() => T | Promise<T>)): Promise<T> => (typeof v === "function" ? (v as () => T | Promise<T>)() : v);

/** The top-level help, from the static table: no command module loads for it. */
function topLevelHelp(): string {
  const width = Math.max(...COMMAND_NAMES.map((c) => c.length));
  const lines = [dim(`${DESCRIPTION} (fmc v${VERSION})`), "", `${underline(bold("USAGE"))} ${cyan("fmc <command> [OPTIONS]")}`, ""];
  for (const group of Object.keys(GROUP_TITLES) as CommandGroup[]) {
    lines.push(underline(bold(GROUP_TITLES[group])), "");
    for (const name of COMMAND_NAMES.filter((c) => COMMANDS[c].group === group)) lines.push(`  ${cyan(name.padEnd(width))}  ${COMMANDS[name].summary}`);
    lines.push("");
  }
  lines.push(
    underline(bold("OPTIONS")),
    "",
    `  ${cyan("-h, --help   ")}  this help; ${cyan("fmc help COMMAND")} is ${cyan("fmc COMMAND --help")}`,
    `  ${cyan("-v, --version")}  fmc's version`,
    "",
    `Use ${cyan("fmc <command> --help")} for more information about a command.`,
  );
  return lines.join("\n") + "\n";
}

/** A command's own help (citty's), with a usage line that names its full path: fmc etcd status. */
async function usageOf(cmd: CommandDef<any>, path: readonly string[]): Promise<string> {
  const { renderUsage } = await import("citty");
  const meta = (await resolve(cmd.meta)) ?? {};
  const named = { ...cmd, meta: { ...meta, name: path[path.length - 1] } };
  const parent = { meta: { name: ["fmc", ...path.slice(0, -1)].join(" "), version: VERSION } };
  return (await renderUsage(named, parent)) + "\n";
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

/**
 * The words of `argv` that are neither options nor options' values, with their indices, up to
 * a "--"; and the words after it.
 */
function wordsOf(argv: readonly string[], args: ArgsDef): { words: Array<{ at: number; word: string }>; afterDashes: string[] } {
  const takesValue = optionNames(args, (d) => d.type === "string" || d.type === "enum");
  const words: Array<{ at: number; word: string }> = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") return { words, afterDashes: argv.slice(i + 1) };
    if (a.startsWith("-") && a !== "-") {
      if (!a.includes("=") && takesValue.has(a.replace(/^--?/, ""))) i++;
      continue;
    }
    words.push({ at: i, word: a });
  }
  return { words, afterDashes: [] };
}

/** Index of the first word in `argv` that is neither an option nor an option's value. */
const firstWord = (argv: readonly string[], args: ArgsDef): number => wordsOf(argv, args).words[0]?.at ?? -1;

/** Words that are neither options, option values nor allowed positionals. */
function surplusWords(args: ArgsDef, argv: string[]): string[] {
  const allowed = Object.values(args).filter((d) => d.type === "positional").length;
  const { words, afterDashes } = wordsOf(argv, args);
  return [...words.map((w) => w.word), ...afterDashes].slice(allowed);
}

function unknownFlags(args: ArgsDef, argv: string[]): string[] {
  const known = new Set(["help", "h", ...optionNames(args)]);
  return argv
    .filter((a) => a.startsWith("-") && a !== "-" && a !== "--")
    .map((a) => a.replace(/^--?(no-)?/, "").split("=")[0]!)
    .filter((n) => !known.has(n));
}

const withHint = (hint: string | undefined, rest: string) => (hint ? `${hint} (${rest})` : rest);

interface Resolved {
  readonly cmd: CommandDef<any>;
  /** The command words: ["etcd", "status"] for fmc etcd status. */
  readonly path: readonly string[];
  /** argv without the command words. */
  readonly rest: string[];
}

/** Follows the command words down the tree: only the modules on the way load. */
async function resolveCommand(argv: string[], own: number): Promise<Resolved> {
  const at = firstWord(argv.slice(0, own), {});
  const word = argv[at]!;
  const subs = fmc.subCommands;
  if (!Object.hasOwn(subs, word)) {
    const hint = didYouMean(word, [...Object.keys(subs), "help"]);
    throw new FmcError("USAGE", `unknown command: ${word}`, withHint(hint, "fmc --help lists every command"));
  }
  let cmd = await resolve(subs[word]!);
  const path = [word];
  let rest = argv.filter((_, i) => i !== at);
  own--;
  for (;;) {
    const children = (await resolve(cmd.subCommands)) as Record<string, CommandDef<any> | Loader> | undefined;
    if (!children || Object.keys(children).length === 0) return { cmd, path, rest };
    const i = firstWord(rest.slice(0, own), ((await resolve(cmd.args)) ?? {}) as ArgsDef);
    const next = i < 0 ? undefined : rest[i]!;
    if (next === undefined || !Object.hasOwn(children, next)) {
      // a group of commands (fmc etcd) takes no words of its own: a word there is a mistyped command
      if (next !== undefined && !cmd.run) {
        const hint = didYouMean(next, Object.keys(children));
        throw new FmcError("USAGE", `unknown command: fmc ${path.join(" ")} ${next}`, withHint(hint, `fmc ${path.join(" ")} --help lists its commands`));
      }
      return { cmd, path, rest };
    }
    cmd = await resolve(children[next]!);
    path.push(next);
    rest = rest.filter((_, j) => j !== i);
    own--;
  }
}

export async function main(argv: string[]): Promise<void> {
  // a reader that stops early (fmc … | head) is not an error
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw e;
    });
    plainWhenNotTerminal(stream);
  }
  let path: readonly string[] = [];
  try {
    // fmc help [COMMAND…] is fmc [COMMAND…] --help
    if (argv[0] === "help") argv = [...argv.slice(1), "--help"];
    // after "--" the words belong to the command a passing-through command runs (lab exec)
    const own = argv.includes("--") ? argv.indexOf("--") : argv.length;
    const mine = argv.slice(0, own);
    const wantsHelp = mine.includes("--help") || mine.includes("-h");

    if (firstWord(mine, {}) < 0) {
      if (wantsHelp || argv.length === 0) process.stdout.write(topLevelHelp());
      else if (mine.includes("--version") || mine.includes("-v")) process.stdout.write(`${VERSION}\n`);
      else throw new FmcError("USAGE", `unknown option: ${mine.find((a) => a.startsWith("-")) ?? argv[0]}`, "fmc --help lists the commands; a command's options go after it");
      return;
    }

    const resolved = await resolveCommand(argv, own);
    const { cmd, rest } = resolved;
    path = resolved.path;
    if (wantsHelp || (!cmd.run && cmd.subCommands)) {
      process.stdout.write(await usageOf(cmd, path));
      return;
    }
    const argsDef = ((await resolve(cmd.args)) ?? {}) as ArgsDef;
    const passThrough = !!((await resolve(cmd.meta)) as { passThrough?: boolean } | undefined)?.passThrough;
    const ownRest = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
    const see = `see: fmc ${path.join(" ")} --help`;
    const bad = unknownFlags(argsDef, passThrough ? ownRest : rest);
    if (bad.length) {
      const hint = didYouMean(bad[0]!, [...optionNames(argsDef)].filter((o) => o.length > 1));
      throw new FmcError("USAGE", `unknown option: --${bad[0]}`, withHint(hint?.replace(/"([^"]+)"/, '"--$1"'), see));
    }
    const surplus = surplusWords(argsDef, passThrough ? ownRest : rest);
    if (surplus.length) {
      const children = (await resolve(cmd.subCommands)) as Record<string, unknown> | undefined;
      const hint = children ? didYouMean(surplus[0]!, Object.keys(children)) : undefined;
      throw new FmcError("USAGE", `unexpected argument: ${surplus[0]}`, withHint(hint, see));
    }
    const { runCommand } = await import("citty");
    await runCommand(cmd, { rawArgs: rest });
  } catch (e) {
    if (e instanceof FmcError && e.code === "SPEC_INVALID" && Array.isArray((e as { problems?: unknown }).problems)) {
      // project.ts's InvalidSpec, known by its code so that this module need not load the spec code
      printProblems((e as unknown as { problems: Problem[] }).problems);
      process.stderr.write(red(`${e.message}; nothing was written\n`));
    } else if (e instanceof FmcError) {
      process.stderr.write(`${red(`error[${e.code}]`)} ${e.message}\n${e.hint ? `    ${dim("hint:")} ${e.hint}\n` : ""}`);
    } else if ((e as Error).name === "CLIError") {
      // citty's own argument errors (a missing positional): a usage error, not a crash
      process.stderr.write(`${red("error[USAGE]")} ${(e as Error).message}\n    ${dim("hint:")} fmc ${path.join(" ")} --help\n`);
    } else {
      process.stderr.write(`${red("internal error")} ${(e as Error).stack ?? String(e)}\n`);
    }
    process.exitCode = 1;
  }
}
