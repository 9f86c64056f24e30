// directory: exists with a mode and owner.
import { cmd, script } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, ChangeSite } from "./change.js";

export interface DirectorySpec {
  readonly path: string;
  readonly mode?: number;
  readonly owner?: string;
  readonly group?: string;
}

export function directoryChange(facts: HostFacts, d: DirectorySpec, ctx: ChangeSite): Change | undefined {
  const cur = facts.dirs.get(d.path);
  const mode = d.mode ?? 0o755;
  const owner = d.owner ?? "root";
  const group = d.group ?? "root";
  if (cur && cur.mode === mode && cur.owner === owner && cur.group === group) return undefined;
  const m = mode.toString(8).padStart(4, "0");
  return {
    host: ctx.host,
    phase: ctx.phase,
    title: `${cur ? "fix" : "create"} directory ${d.path} (${m} ${owner}:${group})`,
    commands: [
      cur ? cmd("chmod", m, d.path) : script(`mkdir -p ${quote(d.path)} && chmod ${m} ${quote(d.path)}`, `mkdir -p ${d.path}`),
      cmd("chown", `${owner}:${group}`, d.path),
    ],
    notes: [],
  };
}
