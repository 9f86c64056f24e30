// The local lab: one Linux host per spec host on this machine. Each host is a network
// namespace with the spec's address, booted with systemd-nspawn (real systemd as PID 1,
// its own sshd, hostname and filesystem view on an overlay of a shared root). All hosts
// hang off one bridge inside a dedicated switch namespace that has no route anywhere;
// one veth from the root namespace carries only the lab's prefixes. Everything the lab
// creates carries the "fmclab" label, so `down` finds it even after a crash.
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { connect } from "node:net";
import { basename, dirname, join, resolve } from "node:path";
import { z } from "zod";
import type { Host, Spec } from "../spec/schema.js";
import type { Topology } from "../spec/topology.js";
import { cidrOf, formatIp, broadcast, overlaps } from "../spec/net.js";
import { FmcError } from "../errors.js";
import { ensureRootfs, LAB_ROOT } from "./rootfs.js";
import { labInventoryPath, type LabInventoryFile } from "../engine/inventory.js";
import { stateDirFor } from "../state/secrets.js";
import { parseStored } from "../state/stored.js";

export const LABEL = "fmclab";
const SWITCH_NS = `${LABEL}-switch`;
const ROOT_LINK = `${LABEL}0`;
const STATE_FILE = join(LAB_ROOT, "lab.json");

export interface LabHost {
  readonly name: string;
  readonly address: string;
  readonly netns: string;
  readonly dir: string;
  pid?: number;
}

/** lab.json: the one lab on this machine and its owner, the checkout that started it. */
export interface LabState {
  readonly lab: string;
  /** The owner: only `lab down` with this state directory (or --force) removes the lab. */
  readonly stateDir: string;
  /** The owner's spec file; undefined for the built-in seed topology. */
  readonly specFile?: string;
  readonly rootAddress: string;
  readonly routes: readonly string[];
  readonly hosts: LabHost[];
}

const absolute = z.string().refine((p) => p.startsWith("/"), "must be an absolute path");
const LabStateFile = z.object({
  lab: z.string().min(1),
  stateDir: absolute,
  specFile: absolute.optional(),
  rootAddress: z.string().min(1),
  routes: z.array(z.string()),
  hosts: z.array(
    z.object({
      name: z.string().min(1),
      address: z.string().min(1),
      netns: z.string().startsWith(`${LABEL}-`),
      dir: absolute,
      pid: z.number().int().positive().optional(),
    }),
  ),
}) satisfies z.ZodType<LabState>;

function run(cmd: string, args: string[], what: string): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new FmcError("LAB", `${what}: ${cmd} ${args.join(" ")}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}
const tryRun = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: "utf8" });

export function requireRoot(): void {
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new FmcError("LAB_ROOT", "the lab needs root: it creates network namespaces, mounts and containers", "run: sudo npx fmc lab up");
  }
}

/** Stable MAC from the address: a recreated host keeps its MAC, so no stale ARP. */
const macOf = (address: string) => `02:fc:${address.split(".").map((o) => Number(o).toString(16).padStart(2, "0")).join(":")}`;

/** The root namespace's lab address: the last usable address of the network. */
export function rootAddressOf(spec: Spec): string {
  return formatIp(broadcast(cidrOf(spec.network.cidr)) - 1);
}

function checkRoutesFree(prefixes: readonly string[]): void {
  const routes = JSON.parse(run("ip", ["-j", "route", "show"], "reading routes")) as Array<{ dst: string; dev: string }>;
  for (const r of routes) {
    if (r.dst === "default" || r.dev === ROOT_LINK) continue;
    const dst = r.dst.includes("/") ? r.dst : `${r.dst}/32`;
    for (const p of prefixes) {
      if (overlaps(cidrOf(p), cidrOf(dst))) {
        throw new FmcError("LAB_ROUTES", `this machine already routes ${r.dst} (dev ${r.dev}), which overlaps the lab's ${p}`, "the lab never changes this machine's own networking; use a spec whose network.cidr is unused here");
      }
    }
  }
}

function readState(): LabState | undefined {
  if (!existsSync(STATE_FILE)) return undefined;
  return parseStored(readFileSync(STATE_FILE, "utf8"), LabStateFile, corruptState);
}

const corruptState = (why: string) =>
  new FmcError("LAB_STATE", `${STATE_FILE} is not a valid lab state file (${why})`, "fmc lab down --force removes whatever lab is on this machine (found by its fmclab label) and this file");

/** The command the owner of a lab runs to remove it. */
export function downCommand(s: Pick<LabState, "stateDir" | "specFile">): string {
  const dir = s.specFile ? dirname(s.specFile) : dirname(s.stateDir);
  const defaultState = stateDirFor(s.specFile ?? join(dir, "cluster.yaml")).path === s.stateDir;
  return `cd ${dir} && fmc lab down${s.specFile ? ` -f ${basename(s.specFile)}` : ""}${defaultState ? "" : ` --state ${s.stateDir}`}`;
}

const ownerOf = (s: LabState) => `state directory ${s.stateDir} (spec ${s.specFile ?? "the built-in seed topology"})`;

function writeState(s: LabState, claim = false): void {
  // the first write claims the machine: of two `lab up`s at once, only one creates it
  writeFileSync(STATE_FILE, JSON.stringify(s, null, 2) + "\n", { mode: 0o600, flag: claim ? "wx" : "w" });
}

function waitForPort(address: string, port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const attempt = () => {
      const sock = connect({ host: address, port });
      sock.setTimeout(500);
      sock.once("data", () => {
        sock.destroy();
        resolve(true);
      });
      const retry = () => {
        sock.destroy();
        if (Date.now() > deadline) resolve(false);
        else setTimeout(attempt, 100);
      };
      sock.once("error", retry);
      sock.once("timeout", retry);
    };
    attempt();
  });
}

export interface UpOptions {
  readonly spec: Spec;
  readonly topo: Topology;
  readonly stateDir: string;
  /** The spec file; undefined for the built-in seed topology. */
  readonly specFile?: string;
  readonly only?: readonly string[];
  readonly log: (line: string) => void;
}

export async function labUp(o: UpOptions): Promise<LabState> {
  requireRoot();
  const stateDir = resolve(o.stateDir);
  const existing = readState();
  if (existing) {
    const ours = existing.stateDir === stateDir;
    throw new FmcError(
      "LAB_EXISTS",
      `a lab (${existing.lab}, ${existing.hosts.length} hosts) is already up${ours ? "" : `, owned by ${ownerOf(existing)}`}`,
      ours ? "fmc lab down first" : existsSync(existing.stateDir) ? `one lab per machine; its owner removes it: ${downCommand(existing)}` : "its owner's state directory is gone: fmc lab down removes it",
    );
  }
  const hosts = o.spec.hosts.filter((h) => !o.only?.length || h.roles.some((r) => o.only!.includes(r)));
  if (hosts.length === 0) throw new FmcError("LAB_EMPTY", `no host has any of the roles ${o.only?.join(", ")}`);
  const rootAddress = rootAddressOf(o.spec);
  if (o.spec.hosts.some((h) => h.address === rootAddress) || o.spec.vips.some((v) => v.address === rootAddress)) {
    throw new FmcError("LAB_ADDRESS", `${rootAddress} is used in the spec; the lab needs it for this machine's side of the lab link`);
  }
  const routes = o.spec.network.subnets.map((s) => s.cidr);
  checkRoutesFree(routes);
  const rootfs = ensureRootfs(o.log);
  const state: LabState = { lab: o.spec.name, stateDir, specFile: o.specFile && resolve(o.specFile), rootAddress, routes, hosts: [] };
  mkdirSync(LAB_ROOT, { recursive: true, mode: 0o700 });
  try {
    writeState(state, true); // from here on, `down` can clean up whatever exists
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new FmcError("LAB_EXISTS", "another lab is being started on this machine right now", "one lab per machine: wait for it, then fmc lab status");
    throw e;
  }
  try {
    // the switch: a bridge in its own namespace, no addresses, no routes
    run("ip", ["netns", "add", SWITCH_NS], "creating the lab switch");
    run("ip", ["-n", SWITCH_NS, "link", "add", "br0", "type", "bridge"], "creating the lab bridge");
    run("ip", ["-n", SWITCH_NS, "link", "set", "br0", "up"], "bridge up");
    // this machine's only link into the lab, carrying only the lab's prefixes
    run("ip", ["link", "add", ROOT_LINK, "type", "veth", "peer", "name", "up0", "netns", SWITCH_NS], "creating the root link");
    run("ip", ["-n", SWITCH_NS, "link", "set", "up0", "master", "br0", "up"], "attaching the root link");
    run("ip", ["addr", "add", `${rootAddress}/32`, "dev", ROOT_LINK], "addressing the root link");
    run("ip", ["link", "set", ROOT_LINK, "up"], "root link up");
    for (const r of routes) run("ip", ["route", "add", r, "dev", ROOT_LINK, "src", rootAddress], `routing ${r} into the lab`);

    hosts.forEach((h, i) => state.hosts.push(createHost(o, h, i, rootfs)));
    writeState(state);
    for (const h of state.hosts) h.pid = boot(h);
    writeState(state);
    const started = Date.now();
    const ready = await Promise.all(state.hosts.map((h) => waitForPort(h.address, 22, 60_000)));
    const late = state.hosts.filter((_, i) => !ready[i]).map((h) => h.name);
    if (late.length) throw new FmcError("LAB_BOOT", `no SSH on ${late.join(", ")} within 60 s`, `see ${join(LAB_ROOT, "labs", o.spec.name, late[0]!, "console.log")}`);
    o.log(`${state.hosts.length} hosts answer SSH after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    writeInventory(o, state);
    return state;
  } catch (e) {
    await labDown({ stateDir, log: o.log });
    throw e;
  }
}

function createHost(o: UpOptions, h: Host, index: number, rootfs: string): LabHost {
  const netns = `${LABEL}-${h.name}`;
  const prefix = o.topo.prefixOf(h.address);
  run("ip", ["netns", "add", netns], `creating ${netns}`);
  run("ip", ["link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", `h${index}`, "netns", SWITCH_NS], `wiring ${h.name}`);
  run("ip", ["-n", SWITCH_NS, "link", "set", `h${index}`, "master", "br0", "up"], `attaching ${h.name}`);
  run("ip", ["-n", netns, "link", "set", "eth0", "address", macOf(h.address)], `MAC of ${h.name}`);
  run("ip", ["-n", netns, "addr", "add", `${h.address}/${prefix}`, "dev", "eth0"], `addressing ${h.name}`);
  run("ip", ["-n", netns, "link", "set", "lo", "up"], "lo up");
  run("ip", ["-n", netns, "link", "set", "eth0", "up"], "eth0 up");
  // the other subnets are on the same bridge: reach them on-link, never via a gateway
  run("ip", ["-n", netns, "route", "add", o.spec.network.cidr, "dev", "eth0"], `routes of ${h.name}`);

  const dir = join(LAB_ROOT, "labs", o.spec.name, h.name);
  for (const d of ["upper", "work", "merged"]) mkdirSync(join(dir, d), { recursive: true });
  run("mount", ["-t", "overlay", `${LABEL}-${h.name}`, "-o", `lowerdir=${rootfs},upperdir=${join(dir, "upper")},workdir=${join(dir, "work")}`, join(dir, "merged")], `mounting ${h.name}'s root`);
  const root = join(dir, "merged");
  writeFileSync(join(root, "etc/hostname"), `${h.name}\n`, { mode: 0o644 });
  chmodSync(join(root, "etc/hostname"), 0o644);
  writeFileSync(join(root, "etc/hosts"), `127.0.0.1 localhost\n${h.address} ${o.topo.fqdn(h.name)} ${h.name}\n`, { mode: 0o644 });
  run("ssh-keygen", ["-A", "-f", root], `host keys for ${h.name}`);
  mkdirSync(join(root, "root/.ssh"), { recursive: true, mode: 0o700 });
  writeFileSync(join(root, "root/.ssh/authorized_keys"), `${o.topo.keysOf(h).join("\n")}\n`, { mode: 0o600 });
  chmodSync(join(root, "root/.ssh/authorized_keys"), 0o600);
  return { name: h.name, address: h.address, netns, dir };
}

function boot(h: LabHost): number {
  const log = openSync(join(h.dir, "console.log"), "w", 0o600);
  const child = spawn(
    "systemd-nspawn",
    ["--boot", "--register=no", "--keep-unit", `--network-namespace-path=/run/netns/${h.netns}`, "-D", join(h.dir, "merged"), "-M", h.name, "--console=passive", "--link-journal=no", "--resolv-conf=off", "--timezone=off", "--quiet",
      // keepalived adds and removes the VIP: the network namespace is the host's own
      "--capability=CAP_NET_ADMIN,CAP_NET_RAW"],
    // /proc/sys/net belongs to the host's own network namespace: writable, so sysctl
    // settings (forwarding, nonlocal bind) are applied for real; the rest stays read-only
    { detached: true, stdio: ["ignore", log, log], env: { ...process.env, SYSTEMD_NSPAWN_API_VFS_WRITABLE: "network" } },
  );
  closeSync(log);
  child.unref();
  if (!child.pid) throw new FmcError("LAB_BOOT", `could not start ${h.name}`);
  return child.pid;
}

function writeInventory(o: UpOptions, s: LabState): void {
  const dir = join(o.stateDir, "lab");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const knownHosts = join(dir, "known_hosts");
  const lines = s.hosts.map((h) => {
    const pub = readFileSync(join(h.dir, "merged/etc/ssh/ssh_host_ed25519_key.pub"), "utf8").trim().split(" ");
    return `${h.address} ${pub[0]} ${pub[1]}`;
  });
  writeFileSync(knownHosts, lines.join("\n") + "\n", { mode: 0o600 });
  const inv: LabInventoryFile = { lab: s.lab, knownHosts, hosts: s.hosts.map((h) => ({ name: h.name, address: h.address, port: 22, user: "root" })) };
  writeFileSync(labInventoryPath(o.stateDir), JSON.stringify(inv, null, 2) + "\n", { mode: 0o600 });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Alive and not a zombie (kill -0 succeeds on zombies). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

function netnsPids(ns: string): number[] {
  const r = tryRun("ip", ["netns", "pids", ns]);
  return r.status === 0 ? r.stdout.split("\n").filter(Boolean).map(Number) : [];
}

/** An nspawn process: a pid from lab.json is signalled only when it still is one. */
function isNspawn(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]!.endsWith("systemd-nspawn");
  } catch {
    return false;
  }
}

export interface DownOptions {
  /** This checkout's state directory: only the lab it owns is removed. */
  readonly stateDir: string;
  /** Remove the lab whoever owns it (and a lab.json that does not parse). */
  readonly force?: boolean;
  readonly log: (line: string) => void;
}

/**
 * Removes the lab this state directory owns, and everything labelled fmclab:
 * processes, mounts, namespaces, links. Another checkout's lab is refused unless forced;
 * leftovers with no owner (no lab.json, or an owner whose state directory is gone) are
 * removed by anyone. Idempotent.
 */
export async function labDown(o: DownOptions): Promise<{ removed: number }> {
  requireRoot();
  const mine = resolve(o.stateDir);
  let state: LabState | undefined;
  try {
    state = readState();
  } catch (e) {
    if (!o.force) throw e;
    o.log(`ignoring ${STATE_FILE}: ${(e as Error).message}`);
  }
  if (state && state.stateDir !== mine && !o.force) {
    if (existsSync(state.stateDir)) {
      throw new FmcError(
        "LAB_NOT_OURS",
        `the lab ${state.lab} (${state.hosts.length} hosts) belongs to ${ownerOf(state)}, not to ${mine}`,
        `its owner removes it: ${downCommand(state)}; or remove it from here with: fmc lab down --force`,
      );
    }
    o.log(`the lab ${state.lab} belonged to ${state.stateDir}, which no longer exists: removing it`);
  }
  const hosts = (state?.hosts ?? []).filter((h) => h.pid && isNspawn(h.pid));
  let removed = 0;
  const namespaces = tryRun("ip", ["netns", "list"]).stdout.split("\n").map((l) => l.split(" ")[0]!).filter((n) => n.startsWith(`${LABEL}-`));
  // 1. ask each container to power off, then make sure nothing is left: no process in
  //    the namespaces, no nspawn (a zombie does not count)
  const busy = () => namespaces.some((n) => netnsPids(n).length > 0) || hosts.some((h) => h.pid && running(h.pid));
  const settle = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && busy()) await sleep(50);
  };
  for (const h of hosts) tryRun("kill", ["-TERM", String(h.pid)]);
  await settle(5000);
  for (const n of namespaces) for (const pid of netnsPids(n)) tryRun("kill", ["-KILL", String(pid)]);
  for (const h of hosts) if (h.pid && running(h.pid)) tryRun("kill", ["-KILL", String(h.pid)]);
  await settle(5000);
  // 2. mounts: every overlay under the lab root, deepest first
  const mounts = readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" ")[1] ?? "").filter((m) => m.startsWith(join(LAB_ROOT, "labs")));
  for (const m of mounts.sort((a, b) => b.length - a.length)) {
    if (tryRun("umount", [m]).status !== 0) tryRun("umount", ["-l", m]);
    removed++;
  }
  // 3. namespaces (their veths go with them) and this machine's link (its routes go with it)
  for (const n of namespaces) {
    if (tryRun("ip", ["netns", "del", n]).status === 0) removed++;
  }
  if (tryRun("ip", ["link", "show", ROOT_LINK]).status === 0) {
    tryRun("ip", ["link", "del", ROOT_LINK]);
    removed++;
  }
  // 4. per-host files and the inventory overlay; the root filesystem cache stays
  if (existsSync(join(LAB_ROOT, "labs"))) for (const d of readdirSync(join(LAB_ROOT, "labs"))) rmSync(join(LAB_ROOT, "labs", d), { recursive: true, force: true });
  // the owner's inventory overlay, and this checkout's own if a forced down elsewhere left it
  for (const d of new Set([...(state ? [state.stateDir] : []), mine])) rmSync(join(d, "lab"), { recursive: true, force: true });
  if (existsSync(STATE_FILE)) {
    rmSync(STATE_FILE, { force: true });
    removed++;
  }
  if (removed) o.log(`removed ${removed} lab objects (namespaces, mounts, links, lab.json)`);
  return { removed };
}

export interface HostStatus {
  readonly name: string;
  readonly address: string;
  readonly running: boolean;
  readonly ssh: boolean;
}

export async function labStatus(): Promise<{ state?: LabState; hosts: HostStatus[] }> {
  const state = readState();
  if (!state) return { hosts: [] };
  const hosts = await Promise.all(
    state.hosts.map(async (h) => ({
      name: h.name,
      address: h.address,
      running: netnsPids(h.netns).length > 0,
      ssh: await waitForPort(h.address, 22, 300),
    })),
  );
  return { state, hosts };
}

/** Runs a command inside a lab host (all of its namespaces), as root. */
export function labExec(hostName: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const state = readState();
  const h = state?.hosts.find((x) => x.name === hostName);
  if (!h?.pid) throw new FmcError("LAB_HOST", `no lab host ${hostName}`);
  // the container's PID 1 is the nspawn process's child
  const leader = tryRun("pgrep", ["-P", String(h.pid)]).stdout.trim().split("\n")[0];
  if (!leader) throw new FmcError("LAB_HOST", `${hostName} is not running`);
  const r = spawnSync("nsenter", ["-t", leader, "-m", "-u", "-i", "-n", "-p", "--", ...args], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
