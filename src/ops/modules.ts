// Kernel modules a role needs: loaded now (modprobe, after which the host's facts are read
// again, since loading a module adds sysctl keys and devices) and at every boot (a
// modules-load.d file). A module this kernel doesn't have (lab hosts share this machine's
// kernel, which loads none) is named in the plan and left out of the file, so a re-run
// still converges.
import { cmd } from "../hosts/command.js";
import type { HostFacts } from "../hosts/facts.js";
import type { Change, OpContext } from "./change.js";
import { fileChange } from "./file.js";

export interface KernelModule {
  readonly name: string;
  /** What is lost on a host without it. */
  readonly why: string;
}

const loadedGuard = (m: string) => `module-loaded:${m}`;
const loadableGuard = (m: string) => `module-loadable:${m}`;

/** The facts that tell loaded, loadable and missing modules apart. */
export function moduleGuards(modules: readonly KernelModule[]): Array<[string, string]> {
  return modules.flatMap((m): Array<[string, string]> => [
    [loadedGuard(m.name), `[ -d /sys/module/${m.name} ]`],
    [loadableGuard(m.name), `modprobe -n -q ${m.name}`],
  ]);
}

export type ModuleState = KernelModule & { readonly state: "loaded" | "loadable" | "missing" };

export function moduleStates(facts: HostFacts, modules: readonly KernelModule[]): ModuleState[] {
  return modules.map((m) => ({
    ...m,
    state: facts.guards.get(loadedGuard(m.name)) === 0 ? "loaded" : facts.guards.get(loadableGuard(m.name)) === 0 ? "loadable" : "missing",
  }));
}

/** The modules-load.d file with the modules, the load of those not loaded yet, and a note per missing one. */
export function moduleChanges(facts: HostFacts, file: { path: string; purpose: string; modules: readonly KernelModule[] }, c: OpContext): Change[] {
  const states = moduleStates(facts, file.modules);
  const missing = states.filter((m) => m.state === "missing");
  const content = [
    `# Managed by fmc: ${file.purpose}, loaded at boot.`,
    ...(missing.length ? [`# not available on this kernel: ${missing.map((m) => m.name).join(", ")}`] : []),
    ...states.filter((m) => m.state !== "missing").map((m) => m.name),
    "",
  ].join("\n");
  const notes = missing.map((m) => `kernel module ${m.name} is not available on this kernel (not loaded, modprobe -n fails): ${m.why}; fmc cannot fix that, give the node a kernel with it`);
  const out: Change[] = [];
  const f = fileChange(facts, { path: file.path, content }, c);
  if (f) out.push({ ...f, notes: [...f.notes, ...notes] });
  const toLoad = states.filter((m) => m.state === "loadable").map((m) => m.name);
  if (toLoad.length) out.push({ host: c.host, phase: c.phase, title: `load kernel modules ${toLoad.join(", ")}`, commands: [cmd("modprobe", "-a", ...toLoad)], notes: [], refreshesFacts: true });
  return out;
}
