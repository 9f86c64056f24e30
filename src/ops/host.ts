// Host identity and swap.
import { cmd, script } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, OpContext, ChangeSite } from "./change.js";
import { fileChange } from "./file.js";

export function hostnameChanges(facts: HostFacts, name: string, ctx: OpContext): Change[] {
  const out: Change[] = [];
  const file = fileChange(facts, { path: "/etc/hostname", content: `${name}\n` }, ctx);
  if (file) out.push(file);
  if (facts.hostname !== name) out.push({ host: ctx.host, phase: ctx.phase, title: `set hostname ${name} (was ${facts.hostname})`, commands: [cmd("hostname", name)], notes: [] });
  return out;
}

export function swapOffChange(facts: HostFacts, ctx: ChangeSite): Change | undefined {
  if (!facts.swapActive) return undefined;
  return {
    host: ctx.host,
    phase: ctx.phase,
    title: "turn swap off and keep it off",
    commands: [script("swapoff -a && sed -i.fmc-prev -E '/^[^#].*\\sswap\\s/ s/^/# fmc: /' /etc/fstab", "swapoff -a; comment out swap in /etc/fstab")],
    notes: ["kubelet requires swap off"],
  };
}
