// Terminal output shared by the commands: colours (NO_COLOR respected), problems.
import { relative } from "node:path";
import { createInterface } from "node:readline/promises";
import { FmcError, type Problem } from "../errors.js";

const color = !process.env.NO_COLOR && process.stderr.isTTY;
const paint = (code: number) => (s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
export const red = paint(31);
export const yellow = paint(33);
export const dim = paint(2);
export const bold = paint(1);
export const cyan = paint(36);
export const underline = paint(4);

/** Colour's escape codes (SGR: ESC [ … m). */
const SGR = /\x1b\[[0-9;]*m/g;
const stripColor = (s: string) => s.replace(SGR, "");

/**
 * Drops colour codes from everything written to `stream` unless it is a terminal and
 * NO_COLOR is unset, whoever wrote them: citty colours its help and its argument errors
 * even into a pipe, and a result painted for a terminal on stderr may go to a piped stdout.
 * Buffers (a command's raw output) pass untouched.
 */
export function plainWhenNotTerminal(stream: NodeJS.WriteStream): void {
  if (!process.env.NO_COLOR && stream.isTTY) return;
  const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => write(typeof chunk === "string" ? stripColor(chunk) : chunk, ...rest)) as typeof stream.write;
}

export const fileArg = { type: "string", alias: "f", description: "cluster spec (default: ./cluster.yaml, else the built-in seed topology)" } as const;
/** The spec may also be named as the first word after the command: fmc validate cluster.yaml. */
export const specArg = { type: "positional", required: false, valueHint: "SPEC", description: "cluster spec file (the same as -f SPEC)" } as const;

/** The spec named by -f or by position; both at once must agree. */
export function specFileOf(args: { file?: string; spec?: string }): string | undefined {
  if (args.spec !== undefined && args.file !== undefined && args.spec !== args.file) {
    throw new FmcError("USAGE", `two spec files given: ${args.spec} and -f ${args.file}`, "name one");
  }
  return args.spec ?? args.file;
}
export const stateArg = { type: "string", description: "state directory for secrets (default: .fmc/ next to the spec)" } as const;

function formatProblem(p: Problem): string {
  const where = `${p.path || "(spec)"}${p.line ? dim(` (line ${p.line})`) : ""}`;
  const tag = p.severity === "error" ? red("error") : yellow("warning");
  return `${tag} ${where}: ${p.message}${p.hint ? `\n    ${dim("hint:")} ${p.hint}` : ""}`;
}

export function printProblems(problems: readonly Problem[]) {
  for (const p of problems) process.stderr.write(formatProblem(p) + "\n");
}

export const n = (count: number, word: string) => `${count} ${word}${count === 1 ? "" : "s"}`;

export function specName(file: string | undefined): string {
  return file ? relative(process.cwd(), file) || file : "built-in seed topology";
}


/**
 * Asks a yes/no question on the terminal (no by default). Without a terminal it refuses:
 * `refusal` says what needed the answer, and --yes is the way round it.
 */
export async function confirm(question: string, refusal: string): Promise<boolean> {
  if (!process.stdin.isTTY) throw new FmcError("CONFIRM", `${refusal} and stdin is not a terminal to ask`, "use --yes");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** How a command that changes hosts says what the hosts lock did (a stale lock taken over, a refresh lost). */
export const lockReport = (line: string): void => void process.stderr.write(`${yellow("lock")} ${line}\n`);
