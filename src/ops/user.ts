// users: exist, with a shell and a home; their authorized keys are a file change.
import { cmd } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, OpContext } from "./change.js";
import { authorizedKeysChange } from "./keys.js";

/**
 * A file in `user`'s home as a fact request names it ("~user/rel"): the fact script resolves
 * the home from the host's passwd and reports the file under its real path, homeOf(facts,
 * user) + "/" + rel. Request the user too (FactRequest.users), so homeOf can say where that is.
 */
export const inHome = (user: string, rel: string): string => `~${user}/${rel}`;

/**
 * Where `user`'s home is: the host's passwd as read (getent passwd, a fact); root's is /root
 * when passwd was not read. Undefined: the host has no such user (or it was not asked about).
 */
export function homeOf(facts: HostFacts, user: string): string | undefined {
  const u = facts.users.get(user);
  if (u?.home) return u.home;
  return user === "root" && u === undefined ? "/root" : undefined;
}

/** useradd --create-home's home for a user it creates (HOME=/home in /etc/default/useradd). */
const createdHome = (user: string) => (user === "root" ? "/root" : `/home/${user}`);

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
  // an existing user's home is where passwd says; a new one's where useradd makes it
  const home = cur ? (homeOf(facts, u.name) ?? createdHome(u.name)) : createdHome(u.name);
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
