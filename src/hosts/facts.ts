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
  readonly dirs: ReadonlyMap<string, { mode: number; owner: string; group: string } | null>;
  /** Live mounts by mount point. */
  readonly mounts: ReadonlyMap<string, { device: string; type: string; options: string }>;
  /** Block devices (lsblk), by path. */
  readonly blockDevices: ReadonlyMap<string, { size: number; type: string; fstype: string | null }>;
  /** LVM volume groups and logical volumes ("vg/lv"): sizes in bytes, an LV's device-mapper path. */
  readonly lvm: { readonly vgs: ReadonlyMap<string, { size: number; free: number }>; readonly lvs: ReadonlyMap<string, { size: number; dmPath: string }> };
  /** Users by name (getent passwd). */
  readonly users: ReadonlyMap<string, { uid: number; home: string; shell: string } | null>;
  /** Exit codes of guard commands, by guard id. */
  readonly guards: ReadonlyMap<string, number>;
}

/**
 * Every kind of fact (HostFacts's keys, in the order `fmc facts` shows them) and the part of a
 * FactRequest that asks for it; null: every read includes it. The one list of their names:
 * a key HostFacts gains or loses fails to compile here until it is named.
 */
export const FACT_SOURCES = {
  os: null,
  hostname: null,
  addresses: null,
  swapActive: null,
  files: "files",
  units: "units",
  packages: "packages",
  sysctl: "sysctl",
  dirs: "dirs",
  mounts: "storage",
  blockDevices: "storage",
  lvm: "storage",
  users: "users",
  guards: "guards",
} as const satisfies Record<keyof HostFacts, keyof FactRequest | null>;

export type FactName = keyof typeof FACT_SOURCES;

/** The kinds of fact by name (fmc facts HOST NAME). */
export const FACT_NAMES = Object.keys(FACT_SOURCES) as readonly FactName[];

export interface FactRequest {
  files: Set<string>;
  dirs: Set<string>;
  units: Set<string>;
  packages: Set<string>;
  sysctl: Set<string>;
  users: Set<string>;
  /** Guard id -> a shell test; its exit code becomes a fact. */
  guards: Map<string, string>;
  /** Mounts, block devices and LVM: read only when a phase needs them. */
  storage: boolean;
}

const SET_KEYS = ["files", "dirs", "units", "packages", "sysctl", "users"] as const;

export function emptyRequest(): FactRequest {
  return { files: new Set(), dirs: new Set(), units: new Set(), packages: new Set(), sysctl: new Set(), users: new Set(), guards: new Map(), storage: false };
}

export function mergeRequests(a: FactRequest, b: Partial<FactRequest>): FactRequest {
  for (const k of SET_KEYS) for (const v of b[k] ?? []) a[k].add(v);
  for (const [id, test] of b.guards ?? []) a.guards.set(id, test);
  a.storage ||= b.storage ?? false;
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
    // one systemctl and one package query for all names: each extra process costs ms
    `echo @units; ${req.units.size ? `systemctl show --property=Id,ActiveState,UnitFileState -- ${words(req.units)} 2>/dev/null` : ""}`,
    `echo @packages${req.packages.size ? `; if command -v dpkg-query >/dev/null; then dpkg-query -W -f='\${Package} \${Status}\\n' -- ${words(req.packages)} 2>/dev/null; elif command -v rpm >/dev/null; then rpm -q --qf '%{NAME} install ok installed\\n' -- ${words(req.packages)} 2>/dev/null | grep ' installed$'; fi; true` : ""}`,
    `echo @sysctl; for k in ${words(req.sysctl)}; do f=/proc/sys/$(echo "$k" | tr . /); if [ -w "$f" ]; then echo "$k=$(tr '\\t' ' ' < "$f")"; elif [ -r "$f" ]; then echo "$k!$(tr '\\t' ' ' < "$f")"; else echo "$k"; fi; done`,
    // "~user/path" is a file in that user's home, wherever the host's passwd puts it; it is
    // reported under its real path (a user the host does not have: under the ~ name, absent)
    `echo @files; for f in ${words(req.files)}; do case "$f" in "~"*) u="\${f#\\~}"; u="\${u%%/*}"; h=$(getent passwd "$u" | cut -d: -f6); if [ -z "$h" ]; then echo "$f -"; continue; fi; f="$h/\${f#*/}" ;; esac; if [ -f "$f" ]; then echo "$f $(stat -c '%a %U %G' "$f") $(base64 -w0 < "$f")"; else echo "$f -"; fi; done`,
    `echo @dirs; for d in ${words(req.dirs)}; do if [ -d "$d" ]; then echo "$d $(stat -c '%a %U %G' "$d")"; else echo "$d -"; fi; done`,
    `echo @users; for u in ${words(req.users)}; do e=$(getent passwd "$u") && echo "$e" || echo "$u"; done`,
    ...[...req.guards].map(([id, test]) => `echo @guard; (${test}) >/dev/null 2>&1; echo "${id.replace(/[^A-Za-z0-9_.:/-]/g, "_")} $?"`),
    ...(req.storage
      ? [
          "echo @mounts; cat /proc/mounts",
          "echo @lsblk; lsblk -J -b -p -o NAME,SIZE,TYPE,FSTYPE 2>/dev/null",
          "echo @vgs; vgs --noheadings --units b --nosuffix -o vg_name,vg_size,vg_free 2>/dev/null; true",
          "echo @lvs; lvs --noheadings --units b --nosuffix -o vg_name,lv_name,lv_size,lv_dm_path 2>/dev/null; true",
        ]
      : []),
    "echo @end",
  ].join("\n");
}

export function parseFacts(host: string, out: string): HostFacts {
  const sections = new Map<string, string[]>();
  let current = "";
  for (const line of out.split("\n")) {
    if (/^@[a-z]+$/.test(line)) {
      current = line.slice(1);
      if (!sections.has(current)) sections.set(current, []);
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
  // systemctl show: blocks of Id=, ActiveState=, UnitFileState= per unit
  const units = new Map<string, UnitFact>();
  for (const block of (sections.get("units") ?? []).join("\n").split(/\n\s*\n/)) {
    const kv = Object.fromEntries(block.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    if (kv.Id) units.set(kv.Id, { active: kv.ActiveState || "unknown", enabled: kv.UnitFileState || "not-found" });
  }
  const packages = new Map(lines("packages").map((l) => [l.split(" ")[0]!, l.endsWith(" install ok installed")]));
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
  const dirs = new Map(
    lines("dirs").map((l) => {
      const [path, mode, owner, group] = l.split(" ");
      return [path!, mode === "-" || mode === undefined ? null : { mode: parseInt(mode, 8), owner: owner!, group: group! }];
    }),
  );
  const users = new Map(
    lines("users").map((l) => {
      const f = l.split(":");
      return [f[0]!, f.length >= 7 ? { uid: Number(f[2]), home: f[5]!, shell: f[6]! } : null];
    }),
  );
  const guards = new Map(lines("guard").map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))]));
  const mounts = new Map(
    lines("mounts").map((l) => {
      const [device, point, type, options] = l.split(" ");
      return [point!.replace(/\\040/g, " "), { device: device!, type: type!, options: options! }];
    }),
  );
  const blockDevices = new Map<string, { size: number; type: string; fstype: string | null }>();
  const lsblk = lines("lsblk").join("\n");
  if (lsblk) {
    const walk = (devs: Array<{ name: string; size: number | string; type: string; fstype: string | null; children?: unknown[] }>) => {
      for (const d of devs) {
        blockDevices.set(d.name, { size: Number(d.size), type: d.type, fstype: d.fstype });
        if (d.children) walk(d.children as typeof devs);
      }
    };
    // lsblk without JSON support prints nothing here (its error goes to stderr); what it did
    // print must parse: a device missing from a broken answer is not a device that is absent
    let parsed: { blockdevices?: Parameters<typeof walk>[0] };
    try {
      parsed = JSON.parse(lsblk) as typeof parsed;
    } catch (e) {
      throw new FmcError("FACTS_LSBLK", `${host}: lsblk's answer is not JSON (${(e as Error).message}): ${JSON.stringify(lsblk.slice(0, 120))}`, "run lsblk -J -b -p -o NAME,SIZE,TYPE,FSTYPE on the host; block devices are not guessed from a broken answer");
    }
    if (!parsed || typeof parsed !== "object" || !Array.isArray(parsed.blockdevices)) {
      throw new FmcError("FACTS_LSBLK", `${host}: lsblk's JSON has no blockdevices list: ${JSON.stringify(lsblk.slice(0, 120))}`, "run lsblk -J -b -p -o NAME,SIZE,TYPE,FSTYPE on the host");
    }
    walk(parsed.blockdevices);
  }
  // vgs/lvs pad their columns with spaces (leading, and trailing after the last one)
  const vgs = new Map(lines("vgs").map((l) => l.trim().split(/\s+/)).map(([n, sz, free]) => [n!, { size: Number(sz), free: Number(free ?? 0) }]));
  const lvs = new Map(
    lines("lvs")
      .map((l) => l.trim().split(/\s+/))
      .map(([vg, lv, sz, dm]) => [`${vg}/${lv}`, { size: Number(sz), dmPath: dm ?? dmPathOf(vg!, lv!) }]),
  );
  return {
    dirs,
    users,
    guards,
    mounts,
    blockDevices,
    lvm: { vgs, lvs },
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

/** The device-mapper path LVM gives a volume: /dev/mapper/<vg>-<lv>, hyphens inside names doubled. */
export function dmPathOf(vg: string, lv: string): string {
  return `/dev/mapper/${vg.replace(/-/g, "--")}-${lv.replace(/-/g, "--")}`;
}

/** The name the kernel shows for a device: /dev/VG/LV of a known volume becomes its /dev/mapper path. */
export function canonicalDevice(facts: HostFacts, device: string): string {
  const m = /^\/dev\/([^/]+)\/([^/]+)$/.exec(device);
  const lv = m && m[1] !== "mapper" ? facts.lvm.lvs.get(`${m[1]}/${m[2]}`) : undefined;
  return lv?.dmPath ?? device;
}

export async function gatherFacts(t: Transport, req: FactRequest): Promise<HostFacts> {
  const res = await t.exec(script(factScript(req), "read facts"), "reading facts");
  if (res.code !== 0) throw new FmcError("FACTS", `${t.host}: reading facts failed: ${res.stderr.trim()}`);
  return parseFacts(t.host, res.stdout);
}
