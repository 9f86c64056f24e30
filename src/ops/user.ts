// users: exist, with a shell and a home; their authorized keys are a file change.
import { cmd } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, OpContext } from "./change.js";
import { authorizedKeysChange } from "./keys.js";

/** Where a user's home (and so its authorized_keys) is, before facts say otherwise. */
export const homeOf = (user: string) => (user === "root" ? "/root" : `/home/${user}`);

export interface UserSpec {
  readonly name: string;
  readonly shell?: string;
  readonly keys?: readonly string[];
  readonly groups?: readonly string[];
}

export function userChanges(facts: HostFacts, u: UserSpec, ctx: OpContext): Change[] {
  const out: Change[] = [];
  const cur = facts.users.get(u.name);
  const shell = u.shell ?? "/bin/bash";
  const home = cur?.home ?? homeOf(u.name);
  if (!cur) {
    out.push({
      host: ctx.host,
      phase: ctx.phase,
      title: `create user ${u.name}`,
      commands: [cmd("useradd", "--create-home", "--shell", shell, ...(u.groups?.length ? ["--groups", u.groups.join(",")] : []), u.name)],
      notes: [],
    });
  } else if (cur.shell !== shell) {
    out.push({ host: ctx.host, phase: ctx.phase, title: `set shell of ${u.name} to ${shell}`, commands: [cmd("usermod", "--shell", shell, u.name)], notes: [] });
  }
  if (u.keys) {
    const group = u.name === "root" ? "root" : u.name;
    const keys = authorizedKeysChange(facts, { user: u.name, path: `${home}/.ssh/authorized_keys`, keys: u.keys, group }, ctx);
    if (keys) out.push({ ...keys, commands: [cmd("install", "-d", "-m", "0700", "-o", u.name, "-g", group, `${home}/.ssh`), ...keys.commands] });
  }
  return out;
}
