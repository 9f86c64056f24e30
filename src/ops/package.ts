// Packages through the OS family's manager; Flatcar has none, so a missing package
// there is a problem to report, not a command to run. An install brings files, units
// and (on Debian) started services, so the engine re-reads facts after it.
import type { HostFacts } from "../hosts/facts.js";
import type { OsFamily } from "../hosts/os.js";
import type { Change, ChangeSite } from "./change.js";
import { FmcError } from "../errors.js";
import { slow } from "../hosts/command.js";

/** An install may take this long (seconds) whatever --timeout says: a small VM unpacking a database server is slow. */
export const INSTALL_TIMEOUT_S = 900;

export function packageChange(facts: HostFacts, family: OsFamily, names: readonly string[], ctx: ChangeSite): Change | undefined {
  const missing = names.filter((n) => !facts.packages.get(n));
  if (missing.length === 0) return undefined;
  const install = family.installPackages(missing);
  if (!install) throw new FmcError("NO_PACKAGES", `${ctx.host}: ${missing.join(", ")} missing and ${family.name} has no package manager`, "Flatcar hosts get their software from Ignition or containers");
  return { host: ctx.host, phase: ctx.phase, title: `install ${missing.join(", ")}`, commands: [slow(install, INSTALL_TIMEOUT_S)], notes: [], refreshesFacts: true };
}
