// The cloud-init files of the AlmaLinux and Debian VMs, read by the real cloud-init (the
// Debian package, 22.4 here; CI installs it): every rendered network-config is converted
// by `cloud-init devel net-convert` as AlmaLinux renders it (sysconfig) and as Debian does
// (networkd, ENI), and the files it writes must hold what the spec says (address, default
// route via the subnet's gateway, DNS servers and search domain; the firewall's DHCP WAN
// and LAN gateways, matched by MAC). Every user-data passes `cloud-init schema`.
// netplan is not among them: it is the one renderer that takes v2 config without parsing
// it, so it would have hidden the "to: default" failure AlmaLinux had.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { renderAll } from "../../src/render/index.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { cidrOf, formatIp } from "../../src/model/net.js";
import type { ClusterContext } from "../../src/state/context.js";
import { contextFor, ROOT, specFrom, tempDir } from "../helpers.js";

const run = promisify(execFile);
const version = spawnSync("cloud-init", ["--version"], { encoding: "utf8" });
const noCloudInit = version.error ? "cloud-init is not on PATH (apt-get install cloud-init; CI installs it)" : false;

/** The seed and every example spec, by name; an example that is the seed again (comments aside) once. */
function specs(): Array<[string, string]> {
  const dir = join(ROOT, "examples");
  const all: Array<[string, string]> = [["built-in seed", SEED_YAML], ...readdirSync(dir).sort().map((d): [string, string] => [`examples/${d}`, readFileSync(join(dir, d, "cluster.yaml"), "utf8")])];
  const seen = new Set<string>();
  return all.filter(([, yaml]) => {
    const key = JSON.stringify(specFrom(yaml));
    return !seen.has(key) && !!seen.add(key);
  });
}

/** What one interface must get, from the spec's model (not from the rendered YAML). */
interface Expected {
  readonly iface: string;
  readonly mac?: string;
  readonly dhcp: boolean;
  /** address/prefix */
  readonly addresses: readonly string[];
  readonly gateway?: string;
  readonly dns: readonly string[];
  readonly search: readonly string[];
}

const netmask = (prefix: number) => formatIp(prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);

function expectedFor(ctx: ClusterContext, name: string): Expected[] {
  const { spec, topo } = ctx;
  const h = topo.host(name);
  const dns = topo.dnsServers;
  const search = [spec.domain];
  if (spec.firewall?.host === name) {
    // the firewall VM: DHCP on the WAN (its MAC is 52:54:01 + its address), the gateway of every libvirt LAN on its own NIC
    const o = h.address.split(".").map(Number);
    const wanMac = `52:54:01:${o.slice(1).map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
    const lans = topo.lanSegments.filter((l) => l.subnet.libvirt !== "none").map((l): Expected => {
      const prefix = cidrOf(l.subnet.cidr).prefix;
      const own = topo.subnetOf(h.address) === l.subnet && h.address !== l.gateway ? [`${h.address}/${prefix}`] : [];
      return { iface: l.firewallInterface, dhcp: false, addresses: [`${l.gateway}/${prefix}`, ...own], dns: [], search: [] };
    });
    return [{ iface: spec.firewall.wanInterface, mac: wanMac, dhcp: true, addresses: [], dns, search }, ...lans];
  }
  return [{ iface: h.interface, dhcp: false, addresses: [`${h.address}/${topo.prefixOf(h.address)}`], gateway: topo.gatewayOf(h.address), dns, search }];
}

/** Every file under dir, relative path → content. */
function tree(dir: string, base = dir, out = new Map<string, string>()): Map<string, string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) tree(p, base, out);
    else out.set(p.slice(base.length + 1), readFileSync(p, "utf8"));
  }
  return out;
}

const shellVars = (text: string) => new Map(text.split("\n").filter((l) => /^[A-Z0-9_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).replace(/^"(.*)"$/, "$1")] as [string, string]));

/** AlmaLinux's sysconfig: ifcfg-<iface>, its route-<iface> if any, resolv.conf. */
function checkSysconfig(files: Map<string, string>, e: Expected, where: string): void {
  const ifcfg = files.get(`etc/sysconfig/network-scripts/ifcfg-${e.iface}`);
  assert.ok(ifcfg, `${where}: no ifcfg-${e.iface} among ${[...files.keys()].join(", ")}`);
  const v = shellVars(ifcfg);
  assert.equal(v.get("DEVICE"), e.iface, where);
  assert.equal(v.get("ONBOOT"), "yes", where);
  if (e.mac) assert.equal(v.get("HWADDR")?.toLowerCase(), e.mac, `${where}: matched by MAC`);
  assert.equal(v.get("BOOTPROTO"), e.dhcp ? "dhcp" : "none", where);
  // the first address as IPADDR/NETMASK (or PREFIX), further ones IPADDR1, IPADDR2, …
  e.addresses.forEach((a, i) => {
    const [ip, prefix] = a.split("/");
    const n = i === 0 ? "" : String(i);
    assert.equal(v.get(`IPADDR${n}`), ip, `${where}: address ${a}`);
    assert.ok(v.get(`NETMASK${n}`) === netmask(Number(prefix)) || v.get(`PREFIX${n}`) === prefix, `${where}: prefix of ${a}`);
  });
  if (e.gateway) {
    // the default route: GATEWAY with DEFROUTE in ifcfg, or a 0.0.0.0/0 entry in route-<iface>
    const route = shellVars(files.get(`etc/sysconfig/network-scripts/route-${e.iface}`) ?? "");
    const inIfcfg = v.get("GATEWAY") === e.gateway && v.get("DEFROUTE") === "yes";
    const inRoute = [...route].some(([k, g]) => /^GATEWAY\d+$/.test(k) && g === e.gateway && route.get(k.replace("GATEWAY", "ADDRESS")) === "0.0.0.0" && route.get(k.replace("GATEWAY", "NETMASK")) === "0.0.0.0");
    assert.ok(inIfcfg || inRoute, `${where}: default route via ${e.gateway}\n${ifcfg}`);
  } else {
    assert.equal(v.get("GATEWAY"), undefined, `${where}: no default route of its own`);
  }
  // a static interface carries its DNS servers; with DHCP they reach resolv.conf only
  if (!e.dhcp) e.dns.forEach((d, i) => assert.equal(v.get(`DNS${i + 1}`), d, `${where}: DNS${i + 1}`));
  if (e.dns.length) {
    const resolv = files.get("etc/resolv.conf") ?? "";
    for (const d of e.dns) assert.match(resolv, new RegExp(`^nameserver ${d.replace(/\./g, "\\.")}$`, "m"), `${where}: resolv.conf`);
    for (const s of e.search) assert.match(resolv, new RegExp(`^search .*\\b${s.replace(/\./g, "\\.")}\\b`, "m"), `${where}: resolv.conf search`);
  }
}

/** systemd-networkd's .network file: sections may repeat ([Address], [Route]). */
function networkdSections(text: string): Array<[string, Map<string, string[]>]> {
  const out: Array<[string, Map<string, string[]>]> = [];
  for (const line of text.split("\n").map((l) => l.trim())) {
    const head = /^\[(\w+)\]$/.exec(line);
    if (head) out.push([head[1]!, new Map()]);
    else if (line.includes("=") && !line.startsWith("#") && out.length) {
      const [k, ...rest] = line.split("=");
      const section = out[out.length - 1]![1];
      section.set(k!, [...(section.get(k!) ?? []), ...rest.join("=").split(/\s+/).filter(Boolean)]);
    }
  }
  return out;
}

function checkNetworkd(files: Map<string, string>, e: Expected, where: string): void {
  const text = files.get(`etc/systemd/network/10-cloud-init-${e.iface}.network`);
  assert.ok(text, `${where}: no .network file for ${e.iface} among ${[...files.keys()].join(", ")}`);
  const sections = networkdSections(text);
  const all = (section: string, key: string) => sections.filter(([n]) => n === section).flatMap(([, s]) => s.get(key) ?? []);
  assert.deepEqual(all("Match", "Name"), [e.iface], where);
  if (e.mac) assert.deepEqual(all("Match", "MACAddress").map((m) => m.toLowerCase()), [e.mac], `${where}: matched by MAC`);
  assert.deepEqual(all("Network", "DHCP"), [e.dhcp ? "ipv4" : "no"], where);
  assert.deepEqual([...all("Address", "Address"), ...all("Network", "Address")].sort(), [...e.addresses].sort(), `${where}: addresses`);
  const routes = sections.filter(([n]) => n === "Route").map(([, s]) => [s.get("Destination")?.[0] ?? "", s.get("Gateway")?.[0] ?? ""]);
  const defaults = [...routes, ...all("Network", "Gateway").map((g) => ["0.0.0.0/0", g])].filter(([d]) => d === "0.0.0.0/0");
  assert.deepEqual(defaults.map(([, g]) => g), e.gateway ? [e.gateway] : [], `${where}: the default route`);
  assert.deepEqual(all("Network", "DNS"), [...e.dns], `${where}: DNS`);
  assert.deepEqual(all("Network", "Domains"), [...e.search], `${where}: search domains`);
}

/** ifupdown's interfaces file: the stanza of one interface. */
function checkEni(files: Map<string, string>, e: Expected, where: string): void {
  const text = files.get("etc/network/interfaces.d/50-cloud-init");
  assert.ok(text, `${where}: no interfaces.d/50-cloud-init among ${[...files.keys()].join(", ")}`);
  const stanzas = text.split(/\n(?=auto |iface )/);
  const stanza = stanzas.filter((s) => s.startsWith(`iface ${e.iface} `)).join("\n");
  assert.ok(stanza, `${where}: no stanza for ${e.iface}\n${text}`);
  assert.match(stanza, new RegExp(`^iface ${e.iface} inet ${e.dhcp ? "dhcp" : "static"}$`, "m"), where);
  assert.ok(text.includes(`auto ${e.iface}\n`), `${where}: ${e.iface} comes up at boot`);
  const addrs = [...stanza.matchAll(/^\s+address (\S+)$/gm)].map((m) => m[1]!);
  assert.deepEqual(addrs.sort(), [...e.addresses].sort(), `${where}: addresses`);
  const gws = [...stanza.matchAll(/^\s+(?:gateway (\S+)|post-up route add default gw (\S+)|post-up ip route add default via (\S+))/gm)].map((m) => m[1] ?? m[2] ?? m[3]);
  assert.deepEqual(gws, e.gateway ? [e.gateway] : [], `${where}: the default route`);
  if (e.dns.length) {
    const ns = [...text.matchAll(/^\s+dns-nameservers (.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    for (const d of e.dns) assert.ok(ns.includes(d), `${where}: dns-nameservers ${d}`);
    const search = [...text.matchAll(/^\s+dns-search (.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    for (const s of e.search) assert.ok(search.includes(s), `${where}: dns-search ${s}`);
  }
}

const RENDERERS = [
  { distro: "rhel", kind: "sysconfig", check: checkSysconfig },
  { distro: "debian", kind: "networkd", check: checkNetworkd },
  { distro: "debian", kind: "eni", check: checkEni },
] as const;

/** At most `limit` promises at a time: cloud-init starts Python for each run. */
async function inBatches<T>(jobs: Array<() => Promise<T>>, limit = 4): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < jobs.length; i += limit) out.push(...(await Promise.all(jobs.slice(i, i + limit).map((j) => j()))));
  return out;
}

const failure = (e: unknown) => {
  const err = e as { code?: number; stderr?: string; stdout?: string };
  return `exit ${err.code}: ${(err.stderr ?? "").trim().split("\n").slice(-3).join("\n")}${err.stdout ? `\n${err.stdout.trim()}` : ""}`;
};

for (const [label, yaml] of specs()) {
  test(`${label}: every network-config converts with the real cloud-init (sysconfig, networkd, ENI) into the spec's addresses, default route and DNS`, { skip: noCloudInit }, async (t) => {
    const ctx = contextFor(yaml);
    const dir = tempDir(t, "fmc-cloudinit-");
    const configs = renderAll(ctx).filter((a) => /^terraform\/libvirt\/cloudinit\/[^/]+\.network-config\.yaml$/.test(a.path));
    const cloudInitHosts = ctx.spec.hosts.filter((h) => h.vm && h.os !== "flatcar").map((h) => h.name);
    assert.deepEqual(configs.map((a) => a.path.split("/").pop()!.replace(".network-config.yaml", "")).sort(), [...cloudInitHosts].sort(), "one network-config per cloud-init VM");
    assert.ok(configs.length > 0, `${label} has cloud-init VMs`);
    const jobs = configs.flatMap((a) => {
      const host = a.path.split("/").pop()!.replace(".network-config.yaml", "");
      const file = join(dir, `${host}.network-config.yaml`);
      writeFileSync(file, a.content);
      return RENDERERS.map((r) => async () => {
        const out = join(dir, `${host}-${r.kind}`);
        mkdirSync(out);
        const where = `${label} ${host} (${r.distro} ${r.kind})`;
        try {
          await run("cloud-init", ["devel", "net-convert", "-p", file, "-k", "yaml", "-d", out, "-D", r.distro, "-O", r.kind], { cwd: dir });
        } catch (e) {
          return `${where}: net-convert failed, ${failure(e)}`;
        }
        const files = tree(out);
        for (const e of expectedFor(ctx, host)) r.check(files, e, where);
        return undefined;
      });
    });
    const failures = (await inBatches(jobs)).filter((f): f is string => f !== undefined);
    assert.deepEqual(failures, [], failures.join("\n\n"));
  });

  test(`${label}: every user-data passes the real cloud-init schema check`, { skip: noCloudInit }, async (t) => {
    const dir = tempDir(t, "fmc-cloudinit-");
    const users = renderAll(contextFor(yaml)).filter((a) => a.path.endsWith(".user-data.yaml"));
    assert.ok(users.length > 0);
    const jobs = users.map((a) => async () => {
      const file = join(dir, a.path.split("/").pop()!);
      writeFileSync(file, a.content);
      try {
        const r = await run("cloud-init", ["schema", "--config-file", file], { cwd: dir });
        return /^Valid cloud-config: /m.test(r.stdout) ? undefined : `${a.path}: ${r.stdout}`;
      } catch (e) {
        return `${a.path}: ${failure(e)}`;
      }
    });
    const failures = (await inBatches(jobs)).filter((f): f is string => f !== undefined);
    assert.deepEqual(failures, [], failures.join("\n\n"));
  });
}
