// The kernel NFS server: its package, /etc/exports with exactly the spec's exports, and
// nfs-server.service. nfs-utils has no dry run: exportfs reads only /etc/exports and
// /etc/exports.d, and -r applies what it reads at once. So the file is correct by
// construction (strict spec formats), written atomically, and applied with exportfs -ra;
// when exportfs fails, the previous file is put back and exported again, and the step
// fails with exportfs's own message. Other files in /etc/exports.d would export what the
// spec does not name: they are moved aside.
import { script } from "../hosts/command.js";
import { quote } from "../shell.js";
import type { HostFacts } from "../hosts/facts.js";
import type { OsFamilyName } from "../hosts/facts.js";
import type { Change, OpContext } from "./change.js";
import { fileChange } from "./file.js";
import { guardedChange, type GuardedSpec } from "./guarded.js";
import { markingReload, pendingFacts, pendingMarker, reloadPending } from "./service.js";

export const NFS_UNIT = "nfs-server.service";
export const EXPORTS = "/etc/exports";
export const NFS_DROPIN = "/etc/systemd/system/nfs-server.service.d/fmc.conf";
/** Exit 0 when the kernel can serve NFS: nfsd loaded (or built in), or loadable. */
export const NFSD_GUARD = "kernel:nfsd";
const NFSD_TEST = "[ -d /proc/fs/nfsd ] || grep -qw nfsd /proc/filesystems || modprobe -n -q nfsd";

/** The NFS server's package per OS family; Flatcar ships nfs-utils in its image. */
export function nfsServerPackages(family: OsFamilyName): string[] {
  return family === "debian-like" ? ["nfs-kernel-server"] : family === "rhel-like" ? ["nfs-utils"] : [];
}

export const EXPORTS_D: GuardedSpec = {
  id: "exports.d-empty",
  title: "move /etc/exports.d/*.exports aside to /etc/exports.d.fmc-disabled (they export what the spec does not name)",
  unless: "! ls /etc/exports.d/*.exports >/dev/null 2>&1",
  run: "set -e; mkdir -p /etc/exports.d.fmc-disabled; mv -f /etc/exports.d/*.exports /etc/exports.d.fmc-disabled/",
  notes: ["storage1 exports exactly storage.exports; the moved files stay in /etc/exports.d.fmc-disabled"],
};

export const nfsFacts = () => ({
  files: new Set([EXPORTS, NFS_DROPIN, ...pendingFacts(NFS_UNIT).files]),
  units: new Set([NFS_UNIT]),
  guards: new Map([[NFSD_GUARD, NFSD_TEST], [EXPORTS_D.id, EXPORTS_D.unless]]),
});

/** exportfs -ra; on failure the previous file comes back, is exported, and the step fails. */
function exportCommand() {
  const prev = quote(`${EXPORTS}.fmc-prev`);
  return script(
    [
      "set -u",
      "if ! out=$(exportfs -ra 2>&1); then",
      '  printf "%s\\n" "$out" >&2',
      `  if [ -e ${prev} ]; then cp -p ${prev} ${EXPORTS}; else : > ${EXPORTS}; fi`,
      "  exportfs -ra >&2 || true",
      `  echo "fmc: exportfs refused the new ${EXPORTS}; the previous one is back in place and exported" >&2`,
      "  exit 1",
      "fi",
      `rm -f ${quote(pendingMarker(NFS_UNIT))}`,
    ].join("\n"),
    "exportfs -ra (the previous /etc/exports back if it fails)",
  );
}

/**
 * /etc/exports as rendered, then exportfs -ra. A run that stopped between the two leaves
 * the pending mark, so the next plan exports although the file already matches.
 */
export function exportsChanges(facts: HostFacts, content: string, ctx: OpContext): Change[] {
  const out: Change[] = [];
  const aside = guardedChange(facts, EXPORTS_D, ctx);
  if (aside) out.push({ ...aside, commands: [...aside.commands] });
  const file = fileChange(facts, { path: EXPORTS, content }, ctx);
  if (file) out.push(markingReload({ ...file, commands: [...file.commands, exportCommand()] }, NFS_UNIT));
  else if (aside || reloadPending(facts, NFS_UNIT)) {
    out.push({ host: ctx.host, phase: ctx.phase, title: `export ${EXPORTS}${aside ? "" : " (an earlier run did not finish)"}`, commands: [exportCommand()], notes: [] });
  }
  return out;
}

/** Whether this host's kernel can serve NFS (facts of NFSD_GUARD); undefined when not read. */
export const nfsdSupported = (facts: HostFacts) => facts.guards.get(NFSD_GUARD) === undefined ? undefined : facts.guards.get(NFSD_GUARD) === 0;
