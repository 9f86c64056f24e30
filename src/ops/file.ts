// file: content, mode and owner. Written to a temp file beside the target, checked by
// the daemon's own validator when one is given, the previous version kept as
// <path>.fmc-prev, then renamed into place: a lost connection or a failing check
// leaves the working file as it was.
import { createTwoFilesPatch } from "diff";
import { script, type Command } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, FileSpec, OpContext } from "./change.js";

export type { FileSpec } from "./change.js";

export function writeFileCommand(f: FileSpec): Command {
  const p = quote(f.path);
  const mode = (f.mode ?? 0o644).toString(8).padStart(4, "0");
  const validate = f.validate ? f.validate.replace("%s", '"$tmp"') : undefined;
  const body = [
    "set -euo pipefail",
    `mkdir -p "$(dirname ${p})"`,
    `tmp=$(mktemp ${quote(`${f.path}.fmc-tmp.`)}XXXXXX)`,
    `trap 'rm -f "$tmp"' EXIT HUP INT TERM`,
    'base64 -d > "$tmp"',
    `chmod ${mode} "$tmp"`,
    `chown ${quote(`${f.owner ?? "root"}:${f.group ?? "root"}`)} "$tmp"`,
    ...(validate ? [`if ! out=$(${validate} 2>&1); then echo "$out" >&2; echo "fmc: ${f.path} failed its check; the current file is unchanged" >&2; exit 3; fi`] : []),
    `if [ -e ${p} ]; then cp -p ${p} ${quote(`${f.path}.fmc-prev`)}; fi`,
    // fault-injection for the tests: widens the window in which a connection can die
    ...(process.env.FMC_TEST_PAUSE_BEFORE_RENAME ? [`sleep ${Number(process.env.FMC_TEST_PAUSE_BEFORE_RENAME)}`] : []),
    `mv -f "$tmp" ${p}`,
    "trap - EXIT HUP INT TERM",
  ].join("\n");
  return script(body, `write ${f.path} (${mode}${f.validate ? `, checked by ${f.validate.split(" ")[0]}` : ""})`, {
    data: Buffer.from(f.content).toString("base64"),
    secret: f.secret,
  });
}

export function fileChange(facts: HostFacts, f: FileSpec, ctx: OpContext): Change | undefined {
  const current = facts.files.get(f.path);
  const mode = f.mode ?? 0o644;
  const owner = f.owner ?? "root";
  const group = f.group ?? "root";
  const same = current && current.content === f.content;
  if (same && current.mode === mode && current.owner === owner && current.group === group) return undefined;
  const notes: string[] = [];
  if (same) notes.push(`mode/owner ${current!.mode.toString(8)} ${current!.owner}:${current!.group} -> ${mode.toString(8)} ${owner}:${group}`);
  const diff = same
    ? undefined
    : createTwoFilesPatch(f.path, f.path, ctx.mask(current?.content ?? ""), ctx.mask(f.content), current ? "current" : "absent", "desired", { context: 2 })
        .split("\n")
        .slice(2)
        .join("\n");
  return {
    host: ctx.host,
    phase: ctx.phase,
    title: `${current ? "update" : "create"} ${f.path}`,
    commands: [writeFileCommand(f)],
    diff,
    notes,
    path: f.path,
    file: f,
  };
}
