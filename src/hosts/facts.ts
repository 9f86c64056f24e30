// Facts: read-only, typed, gathered in one round trip per host and cached for the run.
// Phases say which files, units, packages and sysctl keys they care about; one script
// reads them all.
import { script } from "./command.js";
import type { Transport } from "./transport.js";
import { FmcError } from "../errors.js";

export type OsFamilyName = "flatcar" | "debian-like" | "rhel-like";

export interface FileFact {
  readonly mode: number;
  readonly owner: string;
  readonly group: string;
  readonly content: string;
}

export interface UnitFact {
  readonly active: string; // active, inactive, failed, …
  readonly enabled: string; // enabled, disabled, masked, not-found, …
}

export interface HostFacts {
  readonly os: { id: string; versionId: string; family: OsFamilyName };
  readonly hostname: string;
  /** IPv4 addresses with prefix, per interface: "eth0" -> ["10.17.5.11/24"]. */
  readonly addresses: ReadonlyMap<string, readonly string[]>;
  readonly swapActive: boolean;
  readonly files: ReadonlyMap<string, FileFact | null>;
  readonly units: ReadonlyMap<string, UnitFact>;
  readonly packages: ReadonlyMap<string, boolean>;
  /** null: the key does not exist on this kernel. */
  readonly sysctl: ReadonlyMap<string, { value: string; writable: boolean } | null>;
}

export interface FactRequest {
  files: Set<string>;
  units: Set<string>;
  packages: Set<string>;
  sysctl: Set<string>;
}

export function emptyRequest(): FactRequest {
  return { files: new Set(), units: new Set(), packages: new Set(), sysctl: new Set() };
}

export function mergeRequests(a: FactRequest, b: Partial<FactRequest>): FactRequest {
  for (const k of ["files", "units", "packages", "sysctl"] as const) for (const v of b[k] ?? []) a[k].add(v);
  return a;
}

const words = (s: Set<string>) => [...s].sort().map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(" ");

export function factScript(req: FactRequest): string {
  return [
    "export LC_ALL=C",
    "echo @os; cat /etc/os-release 2>/dev/null",
    "echo @hostname; hostname",
    "echo @addr; ip -o -4 addr show 2>/dev/null | awk '{print $2, $4}'",
    "echo @swap; tail -n +2 /proc/swaps 2>/dev/null",
    `echo @units; for u in ${words(req.units)}; do echo "$u $(systemctl is-active "$u" 2>/dev/null | head -1) $(systemctl is-enabled "$u" 2>/dev/null | head -1)"; done`,
    `echo @packages; for p in ${words(req.packages)}; do if command -v dpkg-query >/dev/null; then s=$(dpkg-query -W -f='\${Status}' "$p" 2>/dev/null); elif command -v rpm >/dev/null; then rpm -q "$p" >/dev/null 2>&1 && s="install ok installed"; fi; echo "$p \${s:-none}" | sed 's/install ok installed/installed/'; s=; done`,
    `echo @sysctl; for k in ${words(req.sysctl)}; do f=/proc/sys/$(echo "$k" | tr . /); if [ -w "$f" ]; then echo "$k=$(tr '\\t' ' ' < "$f")"; elif [ -r "$f" ]; then echo "$k!$(tr '\\t' ' ' < "$f")"; else echo "$k"; fi; done`,
    `echo @files; for f in ${words(req.files)}; do if [ -f "$f" ]; then echo "$f $(stat -c '%a %U %G' "$f") $(base64 -w0 < "$f")"; else echo "$f -"; fi; done`,
    "echo @end",
  ].join("\n");
}

export function parseFacts(host: string, out: string): HostFacts {
  const sections = new Map<string, string[]>();
  let current = "";
  for (const line of out.split("\n")) {
    if (/^@[a-z]+$/.test(line)) {
      current = line.slice(1);
      sections.set(current, []);
    } else if (current) sections.get(current)!.push(line);
  }
  if (!sections.has("end")) throw new FmcError("FACTS", `${host}: could not read facts (output ended early)`);
  const lines = (k: string) => (sections.get(k) ?? []).filter((l) => l.trim() !== "");
  const osRelease = Object.fromEntries(lines("os").map((l) => l.split("=")).map(([k, ...v]) => [k, v.join("=").replace(/^"|"$/g, "")]));
  const id = osRelease.ID ?? "unknown";
  const like = `${id} ${osRelease.ID_LIKE ?? ""}`;
  const family: OsFamilyName = id === "flatcar" ? "flatcar" : /debian|ubuntu/.test(like) ? "debian-like" : /rhel|fedora|centos/.test(like) ? "rhel-like" : "debian-like";
  const addresses = new Map<string, string[]>();
  for (const l of lines("addr")) {
    const [dev, cidr] = l.split(" ");
    if (dev && cidr) addresses.set(dev, [...(addresses.get(dev) ?? []), cidr]);
  }
  const units = new Map(lines("units").map((l) => {
    const [u, active, enabled] = l.split(" ");
    return [u!, { active: active || "unknown", enabled: enabled || "not-found" }];
  }));
  const packages = new Map(lines("packages").map((l) => [l.split(" ")[0]!, l.endsWith(" installed")]));
  const sysctl = new Map(
    lines("sysctl").map((l) => {
      const at = l.search(/[=!]/);
      return at < 0 ? [l, null] : [l.slice(0, at), { value: l.slice(at + 1), writable: l[at] === "=" }];
    }),
  );
  const files = new Map<string, FileFact | null>();
  for (const l of lines("files")) {
    const [path, mode, owner, group, b64] = l.split(" ");
    if (mode === "-" || mode === undefined) files.set(path!, null);
    else files.set(path!, { mode: parseInt(mode, 8), owner: owner!, group: group!, content: Buffer.from(b64 ?? "", "base64").toString("utf8") });
  }
  return {
    os: { id, versionId: osRelease.VERSION_ID ?? "", family },
    hostname: lines("hostname")[0] ?? "",
    addresses,
    swapActive: lines("swap").length > 0,
    files,
    units,
    packages,
    sysctl,
  };
}

export async function gatherFacts(t: Transport, req: FactRequest): Promise<HostFacts> {
  const res = await t.exec(script(factScript(req), "read facts"), "reading facts");
  if (res.code !== 0) throw new FmcError("FACTS", `${t.host}: reading facts failed: ${res.stderr.trim()}`);
  return parseFacts(t.host, res.stdout);
}
