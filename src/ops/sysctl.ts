// sysctl: a persisted file under /etc/sysctl.d and the live values. Keys this host
// cannot set (a module not loaded, a read-only /proc/sys in a container) are reported
// and left out, so a re-run still converges.
import { cmd } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, OpContext } from "./change.js";
import { fileChange } from "./file.js";

export function sysctlChanges(facts: HostFacts, path: string, values: Record<string, string>, ctx: OpContext): Change[] {
  const keys = Object.keys(values).sort();
  const present = keys.filter((k) => facts.sysctl.get(k)?.writable);
  const absent = keys.filter((k) => !present.includes(k));
  const why = (k: string) => (facts.sysctl.get(k) ? "read-only on this host" : "not present on this kernel");
  const content = `# Managed by fmc: edit the cluster spec, not this file.\n${present.map((k) => `${k} = ${values[k]}`).join("\n")}\n`;
  const out: Change[] = [];
  const file = present.length ? fileChange(facts, { path, content }, ctx) : undefined;
  if (file) out.push({ ...file, notes: [...file.notes, ...absent.map((k) => `skipped ${k}: ${why(k)}`)] });
  const drift = present.filter((k) => facts.sysctl.get(k)!.value.trim() !== values[k]!.trim());
  if (drift.length) {
    out.push({ host: ctx.host, phase: ctx.phase, title: `set live ${drift.join(", ")}`, commands: [cmd("sysctl", "-q", "-p", path)], notes: [] });
  }
  return out;
}
