// Persisted mounts as systemd mount units (they survive reboots on Flatcar, whose /etc
// is writable but whose fstab habits differ), enabled and mounted now.
import { escapePath, unitFile } from "../render/systemd.js";
import { cmd } from "../hosts/command.js";
import { canonicalDevice, type HostFacts } from "../hosts/facts.js";
import type { Change, OpContext } from "./change.js";
import { unitChanges, unitPath } from "./unit.js";

export interface MountSpec {
  readonly what: string;
  readonly where: string;
  readonly type: string;
  readonly options?: string;
  /** Units the mount needs first (e.g. the LVM service, network-online.target). */
  readonly after?: readonly string[];
  /** The unit file when a renderer writes it (the same text Ignition installs); else mountUnitText(). */
  readonly unitText?: string;
}

export const mountUnit = (where: string) => `${escapePath(where)}.mount`;

export function mountUnitText(m: MountSpec): string {
  const remote = /^nfs|^cifs/.test(m.type);
  return unitFile({
    Unit: [
      ["Description", `${m.what} on ${m.where} (fmc)`],
      ...(m.after?.length ? ([["After", m.after.join(" ")], ["Requires", m.after.join(" ")]] as Array<[string, string]>) : []),
    ],
    Mount: [["What", m.what], ["Where", m.where], ["Type", m.type], ["Options", m.options ?? "defaults"]],
    Install: [["WantedBy", remote ? "remote-fs.target" : "local-fs.target"]],
  });
}

export function mountChanges(facts: HostFacts, m: MountSpec, ctx: OpContext): Change[] {
  const unit = mountUnit(m.where);
  const out = unitChanges(facts, { unit, content: m.unitText ?? mountUnitText(m), enabled: true, running: true }, ctx);
  const live = facts.mounts.get(m.where);
  if (live && canonicalDevice(facts, live.device) !== canonicalDevice(facts, m.what) && !out.length) {
    out.push({
      host: ctx.host,
      phase: ctx.phase,
      title: `remount ${m.where} from ${m.what}`,
      commands: [cmd("systemctl", "restart", unit)],
      notes: [`${m.where} has ${live.device} mounted now; it will be replaced`],
    });
  }
  return out;
}

export const mountFacts = (where: string) => ({ files: new Set([unitPath(mountUnit(where))]), units: new Set([mountUnit(where)]), storage: true });
