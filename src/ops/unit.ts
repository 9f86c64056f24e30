// systemd unit files: the file, a daemon-reload when it changed, then the service state.
import { cmd } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, OpContext } from "./change.js";
import { fileChange } from "./file.js";
import { markingReload, pendingMarker, reloadPending, serviceChange, type ServiceSpec } from "./service.js";

export interface UnitSpec extends Omit<ServiceSpec, "reload"> {
  readonly content: string;
}

export const unitPath = (unit: string) => `/etc/systemd/system/${unit}`;

export function unitChanges(facts: HostFacts, u: UnitSpec, ctx: OpContext): Change[] {
  const out: Change[] = [];
  const file = fileChange(facts, { path: unitPath(u.unit), content: u.content }, ctx);
  if (file) out.push(markingReload({ ...file, commands: [...file.commands, cmd("systemctl", "daemon-reload")] }, u.unit));
  // a changed unit that runs needs a restart to pick up ExecStart= and friends
  const svc = serviceChange(facts, { ...u, reload: !!file, pending: reloadPending(facts, u.unit), reloadBy: "restart" }, ctx);
  if (svc) out.push(svc);
  return out;
}

/** Facts a unit change needs. */
export const unitFacts = (unit: string) => ({ files: new Set([unitPath(unit), pendingMarker(unit)]), units: new Set([unit]) });
