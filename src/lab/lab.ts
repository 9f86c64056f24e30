// The local lab: one Linux host per spec host on this machine. Each host is a network
// namespace with the spec's address, booted with systemd-nspawn (real systemd as PID 1,
// its own sshd, hostname and filesystem view on an overlay of a shared root). Each LAN
// subnet is its own bridge inside a dedicated switch namespace, routed by the firewall
// host (network.ts has the plan); a namespace named `internet` holds the VPS's public
// side. This machine has one veth per segment, carrying only that segment's prefix.
// Everything the lab creates carries the "fmclab" label, so `down` finds it even after
// a crash.
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync, symlinkSync } from "node:fs";
import { connect } from "node:net";
import { basename, dirname, join, resolve } from "node:path";
import { z } from "zod";
import type { Host, Spec } from "../model/schema.js";
import type { Topology } from "../model/topology.js";
import { cidrOf, overlaps } from "../model/net.js";
import { planLabNet, type HostNet, type Nic } from "./network.js";
import { recordFqdn } from "../render/terraform.js";
import { FmcError } from "../errors.js";
import type { Artifact } from "../render/types.js";
import { labVmShape, TERRAFORM_LIBVIRT_MAIN, vmShapes, type VmShape } from "./shape.js";
import { IGNITION_RESULT, applyIgnitionPresets, buildNoCloudIso, firstBootOf, requireFirstBootTools, runIgnition, seedFromIso, type FirstBoot } from "./firstboot.js";
import { LAB_APT_REPO, LAB_ROOT, prepareRootfs } from "./rootfs.js";
import { consoleHostKey, ensureVmImage, isOurQemu, macOfAddress, sparseDataDisk, startVm, stopVm, tapName, vmPids } from "./vm.js";
import { alive, cmdlineOf, sleep } from "./proc.js";
import { etcdStandInAvailable, HOST_ETCD, installStandIn, issueEtcdCertificates, standInFiles, STANDIN_UNIT, writeLabK3sBundle, type EtcdNode, type StandInFile } from "./k3s-standin.js";
import { quote } from "../shell.js";
import { k3sBundleDir } from "../local/bundle.js";
import { labInventoryPath, type LabInventoryFile, type LabOverrides } from "../engine/inventory.js";
import { stateDirFor } from "../state/secrets.js";
import { parseStored } from "../state/stored.js";

export const LABEL = "fmclab";
const SWITCH_NS = `${LABEL}-switch`;
/** This machine's links into the lab: fmclab0, fmclab1, … one per segment it has an address on. */
const ROOT_LINK = /^fmclab\d+$/;
/** The lab's internet: a namespace of this name whose links carry the lab's label. */
export const INTERNET_NS = "internet";
const ROUTER_NS = `${LABEL}-router`;
const STATE_FILE = join(LAB_ROOT, "lab.json");

export interface LabHost {
  readonly name: string;
  readonly address: string;
  readonly netns: string;
  readonly dir: string;
  /** Its links: name inside the host, the switch port it plugs into, its address. */
  readonly nics?: ReadonlyArray<{ ifname: string; port: string; address: string }>;
  readonly defaultVia?: string;
  /** A QEMU virtual machine (a kernel of its own) rather than a container; pid is QEMU's. */
  readonly vm?: boolean;
  /** A VM's SSH host key, for known_hosts (a container's is read from its root). */
  hostKey?: string;
  /** A container's data disks: sparse files in DIR on loop devices, bound at the rendered device (/dev/vdb, …). */
  readonly disks?: ReadonlyArray<{ device: string; loop: string }>;
  pid?: number;
}

/** lab.json: the one lab on this machine and its owner, the checkout that started it. */
export interface LabState {
  readonly lab: string;
  /** The owner: only `lab down` with this state directory (or --force) removes the lab. */
  readonly stateDir: string;
  /** The owner's spec file; undefined for the built-in seed topology. */
  readonly specFile?: string;
  /** This machine's links into the lab and its address on each. */
  readonly rootLinks: ReadonlyArray<{ name: string; address: string }>;
  /** The internet namespace's client address, if the lab has one. */
  readonly internet?: string;
  readonly hosts: LabHost[];
}

const absolute = z.string().refine((p) => p.startsWith("/"), "must be an absolute path");
const LabStateFile = z.object({
  lab: z.string().min(1),
  stateDir: absolute,
  specFile: absolute.optional(),
  rootLinks: z.array(z.object({ name: z.string().regex(ROOT_LINK), address: z.string().min(1) })),
  internet: z.string().optional(),
  hosts: z.array(
    z.object({
      name: z.string().min(1),
      address: z.string().min(1),
      netns: z.string().startsWith(`${LABEL}-`),
      dir: absolute,
      nics: z.array(z.object({ ifname: z.string().min(1), port: z.string().regex(/^(p\d+|vt[0-9a-f]{8}\d+)$/), address: z.string().min(1) })).optional(),
      defaultVia: z.string().optional(),
      vm: z.boolean().optional(),
      hostKey: z.string().optional(),
      disks: z.array(z.object({ device: z.string().regex(/^\/dev\/vd[b-z]$/), loop: z.string().regex(/^\/dev\/loop\d+$/) })).optional(),
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


function checkRoutesFree(prefixes: readonly string[]): void {
  const routes = JSON.parse(run("ip", ["-j", "route", "show"], "reading routes")) as Array<{ dst: string; dev: string }>;
  for (const r of routes) {
    if (r.dst === "default" || ROOT_LINK.test(r.dev)) continue;
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
function downCommand(s: Pick<LabState, "stateDir" | "specFile">): string {
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
  /** Hosts with any of these roles run as VMs (a kernel of their own); default: storage, database. */
  readonly vmRoles?: readonly string[];
  /** The rendered artifacts (`fmc render`'s): each host boots from its first-boot files in them. */
  readonly artifacts?: readonly Artifact[];
  readonly log: (line: string) => void;
}

/** The roles whose hosts need a kernel of their own (kernel NFS, device-mapper, real reboots). */
export const DEFAULT_VM_ROLES = ["storage", "database"];

/** How long lab up waits for a VM's sshd (an emulated boot, cloud-init's stages before sshd). */
const VM_SSH_WAIT_MS = 600_000;

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
  const net = planLabNet(o.spec, o.topo, hosts);
  checkRoutesFree(net.rootPrefixes);
  const vmRoles = o.vmRoles ?? DEFAULT_VM_ROLES;
  const isVm = (h: Host) => h.roles.some((r) => vmRoles.includes(r));
  const shapes = o.artifacts ? vmShapes(o.artifacts) : new Map<string, VmShape>();
  const firstBoot = new Map(hosts.map((h) => [h.name, o.artifacts ? firstBootInLab(h, isVm(h), firstBootOf(o.artifacts, h.name), o.log) : {}]));
  requireFirstBootTools({ ignition: [...firstBoot.values()].some((f) => f.ignition), cloudInit: [...firstBoot.values()].some((f) => f.cloudInit) });
  if (net.internet && tryRun("ip", ["netns", "pids", INTERNET_NS]).status === 0 && !isLabInternet()) {
    throw new FmcError("LAB_EXISTS", `this machine already has a network namespace named ${INTERNET_NS} that the lab did not create`, "the lab's internet namespace needs that name; remove or rename the other one");
  }
  const rootfs = await prepareRootfs(o.log);
  const rootLinks = net.segments.filter((s) => s.rootAddress).map((s, i) => ({ name: `${LABEL}${i}`, address: s.rootAddress!, bridge: s.bridge, routes: s.rootRoutes ?? [] }));
  const state: LabState = { lab: o.spec.name, stateDir, specFile: o.specFile && resolve(o.specFile), rootLinks: rootLinks.map(({ name, address }) => ({ name, address })), internet: net.internet?.clientAddress, hosts: [] };
  mkdirSync(LAB_ROOT, { recursive: true, mode: 0o700 });
  try {
    writeState(state, true); // from here on, `down` can clean up whatever exists
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new FmcError("LAB_EXISTS", "another lab is being started on this machine right now", "one lab per machine: wait for it, then fmc lab status");
    throw e;
  }
  try {
    // the switch: one bridge per segment in a namespace of its own, no addresses, no routes
    run("ip", ["netns", "add", SWITCH_NS], "creating the lab switch");
    for (const s of net.segments) {
      run("ip", ["-n", SWITCH_NS, "link", "add", s.bridge, "type", "bridge"], `creating segment ${s.name}`);
      run("ip", ["-n", SWITCH_NS, "link", "set", s.bridge, "up"], `segment ${s.name} up`);
    }
    // this machine's links: one per segment, its last usable address, the segment's prefix only
    for (const l of rootLinks) {
      run("ip", ["link", "add", l.name, "type", "veth", "peer", "name", `r-${l.bridge}`, "netns", SWITCH_NS], "creating a root link");
      run("ip", ["-n", SWITCH_NS, "link", "set", `r-${l.bridge}`, "master", l.bridge, "up"], "attaching a root link");
      run("ip", ["addr", "add", l.address, "dev", l.name], "addressing a root link");
      run("ip", ["link", "set", l.name, "up"], "root link up");
      for (const r of l.routes) run("ip", ["route", "add", r, "dev", l.name], `this machine's route to ${r} in the lab`);
    }
    let port = 0;
    const wire = (ns: string, nic: Nic & { mac?: string }): string => {
      const peer = `p${port++}`;
      run("ip", ["link", "add", nic.ifname, "netns", ns, "type", "veth", "peer", "name", peer, "netns", SWITCH_NS], `wiring ${ns} ${nic.ifname}`);
      run("ip", ["-n", SWITCH_NS, "link", "set", peer, "master", nic.bridge, "up"], `attaching ${ns} ${nic.ifname}`);
      run("ip", ["-n", ns, "link", "set", nic.ifname, "address", nic.mac ?? macOfAddress(nic.address.split("/")[0]!)], `MAC of ${ns} ${nic.ifname}`);
      run("ip", ["-n", ns, "addr", "add", nic.address, "dev", nic.ifname], `addressing ${ns} ${nic.ifname}`);
      run("ip", ["-n", ns, "link", "set", nic.ifname, "up"], `${ns} ${nic.ifname} up`);
      return peer;
    };
    const forwarding = (ns: string) => run("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], `forwarding in ${ns}`);
    if (net.router) {
      run("ip", ["netns", "add", ROUTER_NS], "creating the stand-in router");
      run("ip", ["-n", ROUTER_NS, "link", "set", "lo", "up"], "router lo up");
      for (const nic of net.router.nics) wire(ROUTER_NS, nic);
      forwarding(ROUTER_NS);
    }
    if (net.internet) {
      run("ip", ["netns", "add", INTERNET_NS], "creating the internet namespace");
      run("ip", ["-n", INTERNET_NS, "link", "set", "lo", "up"], "internet lo up");
      for (const nic of net.internet.nics) wire(INTERNET_NS, nic);
      // a router between the VPS's /24 and the firewall's uplink; nothing else exists
      forwarding(INTERNET_NS);
      if (net.internet.mirror) serveMirror(net.internet.mirror, rootfs, join(LAB_ROOT, "labs", o.spec.name));
    }
    const vmImage = hosts.some(isVm) ? await ensureVmImage(o.log) : undefined;
    // K3s's embedded etcd, stood in for by a real etcd on the k3s-server containers
    const etcdNodes: EtcdNode[] = hosts.filter((h) => h.roles.includes("k3s-server") && !isVm(h)).map((h) => ({ name: h.name, address: h.address }));
    let etcdCerts: Map<string, string> | undefined;
    const bundleDir = k3sBundleDir(stateDir, o.spec.k3s.version, "lab");
    rmSync(bundleDir, { recursive: true, force: true });
    if (etcdNodes.length && etcdStandInAvailable()) {
      etcdCerts = issueEtcdCertificates(join(stateDir, "lab", "etcd"), o.spec.name, etcdNodes);
      await writeLabK3sBundle(bundleDir, o.spec.k3s.version);
      o.log(`K3s stand-in (real etcd underneath, ${STANDIN_UNIT}) for ${etcdNodes.map((n) => n.name).join(", ")}: fmc apply installs it from ${bundleDir}`);
    } else if (etcdNodes.length) o.log(`no ${HOST_ETCD} on this machine: the lab has no K3s stand-in (apt-get install etcd-server etcd-client)`);
    const isK3sNode = (h: Host) => h.roles.includes("k3s-server") || h.roles.includes("k3s-agent");
    const standInOf = (h: Host): StandInFile[] | undefined =>
      etcdCerts && isK3sNode(h) && (etcdCerts.has(h.name) || !h.roles.includes("k3s-server"))
        ? standInFiles(o.spec.name, { name: h.name, address: h.address, server: etcdCerts.has(h.name) }, etcdNodes, etcdCerts)
        : undefined;
    const standIn = (h: Host) => {
      const files = standInOf(h);
      return files ? (root: string) => installStandIn(root, files, etcdCerts!.has(h.name)) : undefined;
    };
    net.hosts.forEach((hn, i) => {
      const h = hosts[i]!;
      if (isVm(h)) {
        const dir = join(LAB_ROOT, "labs", o.spec.name, h.name);
        state.hosts.push({ name: h.name, address: hn.sshAddress, netns: `${LABEL}-${h.name}`, dir, defaultVia: hn.defaultVia, vm: true, nics: hn.nics.map((n, k) => ({ ifname: n.ifname, port: tapName(`${LABEL}-${h.name}`, k), address: n.address })) });
      } else {
        o.log(`${h.name}: container at ${hn.sshAddress} (${i + 1} of ${hosts.length} hosts)`);
        state.hosts.push(createHost(o, h, hn, rootfs, wire, firstBoot.get(h.name) ?? {}, shapes.get(h.name), net.internet?.mirror, standIn(h)));
      }
    });
    writeState(state);
    const containers = state.hosts.filter((h) => !h.vm);
    if (containers.length) o.log(`booting ${containers.length} containers (systemd-nspawn)`);
    for (const h of containers) h.pid = boot(h);
    // VMs boot in parallel with the containers; each records its pid as soon as QEMU runs
    await Promise.all(
      state.hosts.filter((h) => h.vm).map(async (h) => {
        const spec = hosts.find((x) => x.name === h.name)!;
        const hn = net.hosts.find((x) => x.name === h.name)!;
        // the domain as the rendered Terraform declares it (the lab stands in for the libvirt provider)
        const rendered = shapes.get(h.name);
        const shape = rendered && labVmShape(rendered);
        if (rendered && shape) o.log(`${h.name}: shape from ${TERRAFORM_LIBVIRT_MAIN}: ${rendered.vcpu} vCPU, ${rendered.memoryMiB} MiB, root ${rendered.rootGiB} GiB${rendered.dataDisks.map((d) => `, ${d.name} ${d.sizeGiB} GiB`).join("")}${shape.scaled ? `; the lab gives it ${shape.vcpu} vCPU and ${shape.memoryMiB} MiB (emulated beside the containers)` : ""}`);
        // its first-boot files as the libvirt provider hands them over (fw_cfg, a NoCloud disk)
        const first = firstBoot.get(h.name) ?? {};
        let cloudInitIso: string | undefined;
        if (first.cloudInit && !first.ignition) {
          mkdirSync(h.dir, { recursive: true, mode: 0o700 });
          cloudInitIso = join(h.dir, "cidata.iso");
          buildNoCloudIso(first.cloudInit, cloudInitIso);
        }
        const macs = rendered?.nicMacs && rendered.nicMacs.length === hn.nics.length ? rendered.nicMacs : [];
        const vm = await startVm({
          name: h.name,
          dir: h.dir,
          nics: hn.nics.map((n, k) => ({ bridge: n.bridge, mac: macs[k] ?? macOfAddress(n.address.split("/")[0]!), address: n.address, ifname: n.ifname })),
          defaultVia: hn.defaultVia,
          dataDisks: shape?.dataDisks ?? spec.vm?.dataDisks ?? [],
          ...(shape ? { memoryMiB: shape.memoryMiB, vcpus: shape.vcpu } : {}),
          authorizedKeys: [...o.topo.keysOf(spec), labPublicKey(o.stateDir)],
          hostname: h.name,
          // cloud-init writes /etc/hosts itself (as in a container)
          files: [...(cloudInitIso ? [] : [{ path: "/etc/hosts", content: `127.0.0.1 localhost\n${spec.address} ${o.topo.fqdn(h.name)} ${h.name}\n`, mode: 0o644 }]), ...(standInOf(spec) ?? [])],
          ...(first.ignition ? { firstBoot: { ignition: first.ignition } } : cloudInitIso ? { firstBoot: { cloudInitIso } } : {}),
          image: vmImage,
          switchNs: SWITCH_NS,
          log: o.log,
        });
        h.pid = vm.pid;
        h.hostKey = vm.hostKey;
      }),
    );
    writeState(state);
    const started = Date.now();
    // a VM boots a kernel under software emulation: 20-30 s, longer beside the containers
    // (a cloud-init VM's sshd waits for cloud-init's network stage: ≈ 130-170 s under
    // emulation beside the containers, measured 2026-12-07; more on a busy machine)
    o.log(`waiting for SSH on ${state.hosts.length} hosts${state.hosts.some((h) => h.vm) ? " (a VM boots its own kernel under emulation: up to 10 min)" : ""}`);
    let answered = 0;
    const ready = await Promise.all(
      state.hosts.map(async (h) => {
        const ok = await waitForPort(h.address, 22, h.vm ? VM_SSH_WAIT_MS : 60_000);
        if (ok) o.log(`${h.name}: SSH answers after ${((Date.now() - started) / 1000).toFixed(1)} s (${++answered} of ${state.hosts.length})`);
        return ok;
      }),
    );
    const late = state.hosts.filter((_, i) => !ready[i]).map((h) => h.name);
    if (late.length) throw new FmcError("LAB_BOOT", `no SSH on ${late.join(", ")} in time`, `see ${join(LAB_ROOT, "labs", o.spec.name, late[0]!, "console.log")}`);
    o.log(`${state.hosts.length} hosts answer SSH after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const seeded = state.hosts.filter((h) => firstBoot.get(h.name)?.cloudInit && !firstBoot.get(h.name)?.ignition);
    writeKnownHosts(o.stateDir, state);
    // a Flatcar VM's Ignition ran before its sshd started: it must have provisioned the root
    for (const h of state.hosts.filter((x) => x.vm && firstBoot.get(x.name)?.ignition)) ignitionDoneInVm(h, o.log);
    // a cloud-init VM's host keys are cloud-init's own, printed on its console when it ends
    const keyless = state.hosts.filter((h) => h.vm && !h.hostKey);
    if (keyless.length) {
      await Promise.all(
        keyless.map(async (h) => {
          h.hostKey = await consoleHostKey(join(h.dir, "console.log"), 600_000, h.pid);
          o.log(`${h.name}: SSH host key from its console (cloud-init's keys-to-console) after ${((Date.now() - started) / 1000).toFixed(1)} s`);
        }),
      );
      writeState(state);
      writeKnownHosts(o.stateDir, state);
    }
    if (seeded.length) {
      o.log(`waiting for cloud-init to finish on ${seeded.map((h) => h.name).join(", ")}`);
      await Promise.all(seeded.map((h) => cloudInitDone(h, o.log)));
      o.log(`cloud-init done on ${seeded.length} hosts after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    const tls = issueLabCertificates(o);
    writeInventory(o, state, tls);
    return state;
  } catch (e) {
    await labDown({ stateDir, log: o.log });
    throw e;
  }
}

/**
 * Waits for the real cloud-init to finish all its stages on a host and fails, with its own
 * report, when it ended in error: a host whose first-boot files don't work never counts as up.
 */
async function cloudInitDone(h: LabHost, log: (line: string) => void): Promise<void> {
  const [cmd, ...args] = labExecCommand(h.name, ["cloud-init", "status", "--wait", "--long"]);
  const r = await new Promise<{ code: number | null; out: string }>((done) => {
    const child = spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe"], timeout: 300_000 });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.once("close", (code) => done({ code, out }));
    child.once("error", (e) => done({ code: null, out: e.message }));
  });
  const status = r.out.match(/^status:\s*(\S+)/m)?.[1];
  if (r.code !== 0 || status !== "done") {
    throw new FmcError("LAB_FIRSTBOOT", `cloud-init on ${h.name} did not finish cleanly (status ${status ?? "unknown"}): ${r.out.trim().split("\n").slice(-6).join(" / ")}`, `its log: fmc lab exec ${h.name} -- cat /var/log/cloud-init.log`);
  }
  log(`${h.name}: cloud-init status: done`);
}

/**
 * A Flatcar VM's first boot ran the real Ignition before sshd: its result file is there, or
 * lab up fails with Ignition's own words from the console.
 */
function ignitionDoneInVm(h: LabHost, log: (line: string) => void): void {
  const r = labExec(h.name, ["cat", IGNITION_RESULT], { timeoutMs: 60_000 });
  if (r.status === 0) {
    log(`${h.name}: Ignition (real, every stage, config through fw_cfg) provisioned it at first boot (${IGNITION_RESULT})`);
    return;
  }
  const consoleLog = join(h.dir, "console.log");
  const said = existsSync(consoleLog) ? readFileSync(consoleLog, "latin1").split("\n").filter((l) => /fmc-lab-ignition|CRITICAL/.test(l)).slice(-4).map((l) => l.replace(/^\[[ \d.]+\]\s*/, "").trim()) : [];
  throw new FmcError("LAB_FIRSTBOOT", `Ignition did not provision ${h.name} at its first boot${said.length ? `: ${said.join(" / ")}` : ""}`, `see ${consoleLog}; the rendered config: ignition-validate out/ignition/${h.name}.ign`);
}

/** The internet namespace is the lab's when its links carry the lab's label. */
function isLabInternet(): boolean {
  const r = tryRun("ip", ["-n", INTERNET_NS, "-o", "link", "show"]);
  return r.status === 0 && /: fmclab-/.test(r.stdout);
}

/**
 * What of a host's first-boot files the lab can run. A VM runs all of them (Ignition's every
 * stage, cloud-init from its NoCloud disk). A container gets its data disks as loop devices
 * (its first boot formats and mounts them, and K3s requires the mount); on a machine without
 * loop devices a Flatcar host with data disks is not booted from its Ignition (said here).
 */
function firstBootInLab(h: Host, vm: boolean, f: FirstBoot, log: (line: string) => void): FirstBoot {
  if (f.ignition && h.vm?.dataDisks.length && !vm && !loopDevices()) {
    log(`${h.name}: has data disks, which its first boot formats and mounts: this machine has no loop devices for a container, so it is not booted from its Ignition (a VM would be)`);
    return {};
  }
  return f;
}

function createHost(o: UpOptions, h: Host, hn: HostNet, rootfs: string, wire: (ns: string, nic: Nic & { readonly mac?: string }) => string, first: FirstBoot, shape: VmShape | undefined, mirror: string | undefined, standIn?: (root: string) => void): LabHost {
  const nicMacs = shape?.nicMacs;
  const netns = `${LABEL}-${h.name}`;
  run("ip", ["netns", "add", netns], `creating ${netns}`);
  run("ip", ["-n", netns, "link", "set", "lo", "up"], "lo up");
  // the MACs the rendered domain fixes (the firewall's cloud-init finds its NICs by them), else the lab's own
  const macs = nicMacs && nicMacs.length === hn.nics.length ? nicMacs : [];
  const nics = hn.nics.map((nic, i) => ({ ifname: nic.ifname, port: wire(netns, { ...nic, ...(macs[i] ? { mac: macs[i] } : {}) }), address: nic.address }));
  if (hn.defaultVia) run("ip", ["-n", netns, "route", "add", "default", "via", hn.defaultVia], `default route of ${h.name}`);

  const dir = join(LAB_ROOT, "labs", o.spec.name, h.name);
  for (const d of ["upper", "work", "merged"]) mkdirSync(join(dir, d), { recursive: true });
  run("mount", ["-t", "overlay", `${LABEL}-${h.name}`, "-o", `lowerdir=${rootfs},upperdir=${join(dir, "upper")},workdir=${join(dir, "work")}`, join(dir, "merged")], `mounting ${h.name}'s root`);
  const root = join(dir, "merged");
  const disks = (shape?.dataDisks ?? []).map((d, i) => attachDataDisk(dir, d, i));
  if (disks.length) o.log(`${h.name}: data disks ${disks.map((d) => `${d.device} (${d.loop}, sparse)`).join(", ")}, as the rendered domain gives it`);
  // a host with first-boot files gets its name (and cloud-init's hosts its /etc/hosts) from them
  if (!first.ignition && !first.cloudInit) {
    writeFileSync(join(root, "etc/hostname"), `${h.name}\n`, { mode: 0o644 });
    chmodSync(join(root, "etc/hostname"), 0o644);
  }
  if (!first.cloudInit) {
    writeFileSync(join(root, "etc/hosts"), `127.0.0.1 localhost\n${h.address} ${o.topo.fqdn(h.name)} ${h.name}\n`, { mode: 0o644 });
    // no seed: cloud-init (in the lab's root for the hosts that have one) stays off, as on a
    // Flatcar host, which has none; it would otherwise search for a datasource at every boot
    writeFileSync(join(root, "etc/cloud/cloud-init.disabled"), "fmc lab: this host has no cloud-init seed\n", { mode: 0o644 });
  }
  run("ssh-keygen", ["-A", "-f", root], `host keys for ${h.name}`);
  mkdirSync(join(root, "root/.ssh"), { recursive: true, mode: 0o700 });
  writeFileSync(join(root, "root/.ssh/authorized_keys"), `${[...o.topo.keysOf(h), labPublicKey(o.stateDir)].join("\n")}\n`, { mode: 0o600 });
  chmodSync(join(root, "root/.ssh/authorized_keys"), 0o600);
  if (o.topo.ingressBackends.some((b) => b.name === h.name)) installBackend(root, o.spec.k3s.ingressNodePorts.http);
  if (mirror) useMirror(root, mirror);
  standIn?.(root);
  if (first.ignition) {
    const t = Date.now();
    const run = runIgnition(first.ignition, root, dir);
    const presets = applyIgnitionPresets(root);
    o.log(`${h.name}: Ignition (real, fetch + files stages) provisioned its root in ${Date.now() - t} ms (${run.relabelled.length} paths for SELinux relabelling recorded: the lab's Debian root has no policy); its presets applied as a first boot does: ${presets.join(" ") || "none"}`);
  }
  if (first.cloudInit) {
    const iso = join(dir, "cidata.iso");
    buildNoCloudIso(first.cloudInit, iso);
    seedFromIso(iso, root);
    o.log(`${h.name}: NoCloud seed from ${iso} (built as libvirt_cloudinit_disk builds it); the real cloud-init runs it at boot`);
  }
  return { name: h.name, address: hn.sshAddress, netns, dir, nics, defaultVia: hn.defaultVia, ...(disks.length ? { disks } : {}) };
}

/** Whether this machine can give containers block devices (loop devices: built into its kernel, no module to load). */
const loopDevices = () => existsSync("/dev/loop-control");

/**
 * A container's data disk as the libvirt domain has it: a sparse file of the rendered size
 * in the host's directory, on a loop device that boot() binds at /dev/vdb, /dev/vdc, …
 * (the device names the spec and the first-boot files use). lab down detaches it.
 */
function attachDataDisk(dir: string, d: { readonly name: string; readonly sizeGiB: number }, i: number): { device: string; loop: string } {
  if (i > 23) throw new FmcError("LAB", `invalid data disk ${JSON.stringify(d)}: a host has /dev/vdb to /dev/vdy`);
  const file = sparseDataDisk(dir, d);
  const loop = run("losetup", ["--find", "--show", file], `a loop device for ${file}`).trim();
  if (!/^\/dev\/loop\d+$/.test(loop)) throw new FmcError("LAB", `losetup answered ${JSON.stringify(loop)} for ${file}`);
  return { device: `/dev/vd${String.fromCharCode(98 + i)}`, loop };
}

/** Detaches every loop device whose backing file is under the lab's directory (lab down, even for a lab whose lab.json is gone). */
function detachDataDisks(): number {
  const r = tryRun("losetup", ["--json", "--list", "--output", "NAME,BACK-FILE"]);
  if (r.status !== 0 || !r.stdout.trim()) return 0;
  const labs = join(LAB_ROOT, "labs") + "/";
  let n = 0;
  for (const l of (JSON.parse(r.stdout) as { loopdevices?: Array<{ name: string; "back-file"?: string | null }> }).loopdevices ?? []) {
    const back = (l["back-file"] ?? "").replace(/ \(deleted\)$/, "");
    if (back.startsWith(labs) && /^\/dev\/loop\d+$/.test(l.name) && tryRun("losetup", ["--detach", l.name]).status === 0) n++;
  }
  return n;
}

/**
 * The lab's package mirror: the root filesystem's offline repository served over HTTP from
 * an address of the lab's internet (a plain python3 http.server in the internet namespace;
 * lab down kills it with the namespace's other processes).
 */
function serveMirror(address: string, rootfs: string, logDir: string): void {
  run("ip", ["-n", INTERNET_NS, "addr", "add", `${address}/32`, "dev", "lo"], "the package mirror's address");
  mkdirSync(logDir, { recursive: true });
  const log = openSync(join(logDir, "mirror.log"), "w", 0o600);
  const child = spawn("ip", ["netns", "exec", INTERNET_NS, "python3", "-m", "http.server", "80", "--bind", address, "--directory", join(rootfs, LAB_APT_REPO.slice(1))], { detached: true, stdio: ["ignore", log, log] });
  closeSync(log);
  child.unref();
  if (!child.pid) throw new FmcError("LAB_BOOT", "could not start the lab's package mirror");
}

/** A host's only apt source is the mirror on the lab's internet: it gets packages once its gateway lets it out. */
function useMirror(root: string, address: string): void {
  writeFileSync(join(root, "etc/apt/sources.list.d/fmc-lab.list"), `# The lab's package mirror on its internet (fmc lab), reached through this host's gateway\ndeb [trusted=yes] http://${address}/ ./\n`, { mode: 0o644 });
}

/** The lab stand-in for an ingress backend (K3s can't run here): see BACKEND_PY. */
const BACKEND_UNIT = "fmc-lab-backend.service";
const BACKEND_PY = `# fmc lab stand-in for an ingress backend: K3s can't run on the lab machine, so this
# answers every request on the ingress NodePort with this host's name and the
# X-Forwarded-For header it received. Started by the lab, never by fmc apply.
import http.server, socket, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("lab stand-in backend %s\\nx-forwarded-for: %s\\n" % (socket.gethostname(), self.headers.get("X-Forwarded-For", ""))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("", int(sys.argv[1])), Handler).serve_forever()
`;

function installBackend(root: string, port: number): void {
  mkdirSync(join(root, "usr/local/lib/fmc-lab"), { recursive: true });
  writeFileSync(join(root, "usr/local/lib/fmc-lab/backend.py"), BACKEND_PY, { mode: 0o644 });
  writeFileSync(
    join(root, "etc/systemd/system", BACKEND_UNIT),
    `# fmc lab stand-in: an ingress backend on the NodePort (K3s can't run on the lab machine)\n[Unit]\nDescription=fmc lab stand-in ingress backend on port ${port}\n\n[Service]\nExecStart=/usr/bin/python3 /usr/local/lib/fmc-lab/backend.py ${port}\nRestart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n`,
    { mode: 0o644 },
  );
  mkdirSync(join(root, "etc/systemd/system/multi-user.target.wants"), { recursive: true });
  symlinkSync(`/etc/systemd/system/${BACKEND_UNIT}`, join(root, "etc/systemd/system/multi-user.target.wants", BACKEND_UNIT));
}

function boot(h: LabHost): number {
  const log = openSync(join(h.dir, "console.log"), "w", 0o600);
  const child = spawn(
    "systemd-nspawn",
    ["--boot", "--register=no", "--keep-unit", `--network-namespace-path=/run/netns/${h.netns}`, "-D", join(h.dir, "merged"), "-M", h.name, "--console=passive", "--link-journal=no", "--resolv-conf=off", "--timezone=off", "--quiet",
      // keepalived adds and removes the VIP: the network namespace is the host's own
      "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
      // WireGuard in user space (wireguard-go): the lab machine's kernel has no module
      "--bind=/dev/net/tun",
      // its data disks at the rendered device names (loop devices on sparse files)
      ...(h.disks ?? []).map((d) => `--bind=${d.loop}:${d.device}`)],
    // /proc/sys/net belongs to the host's own network namespace: writable, so sysctl
    // settings (forwarding, nonlocal bind) are applied for real; the rest stays read-only
    { detached: true, stdio: ["ignore", log, log], env: { ...process.env, SYSTEMD_NSPAWN_API_VFS_WRITABLE: "network" } },
  );
  closeSync(log);
  child.unref();
  if (!child.pid) throw new FmcError("LAB_BOOT", `could not start ${h.name}`);
  return child.pid;
}

/** The lab's own SSH key (.fmc/lab/lab_key, 0600): `lab exec` reaches VM hosts with it. */
const labKeyPath = (stateDir: string) => join(stateDir, "lab", "lab_key");

function labPublicKey(stateDir: string): string {
  const key = labKeyPath(stateDir);
  if (!existsSync(key)) {
    mkdirSync(dirname(key), { recursive: true, mode: 0o700 });
    run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "fmc-lab", "-f", key], "creating the lab's SSH key");
    chmodSync(key, 0o600);
  }
  return readFileSync(`${key}.pub`, "utf8").trim();
}

/** The spec's public names: what the edge serves certificates for. */
export function publicNames(spec: Spec): string[] {
  const cf = spec.cloudflare;
  if (!cf) return [`edge.${spec.domain}`];
  return cf.records.map((r) => recordFqdn(cf.zone, r.name));
}

/**
 * The lab's CA (.fmc/lab/ca.pem, key 0600) and an origin certificate it signs for the
 * spec's public names: the edge serves real TLS that `curl --cacert` verifies.
 */
function issueLabCertificates(o: UpOptions): { cert: string; key: string } {
  const dir = join(o.stateDir, "lab");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const f = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run("openssl", ["req", "-x509", ...ec, "-keyout", f("ca-key.pem"), "-out", f("ca.pem"), "-days", "30", "-subj", `/CN=fmc lab CA for ${o.spec.name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "creating the lab CA");
  run("openssl", ["req", ...ec, "-keyout", f("origin-key.pem"), "-out", f("origin.csr"), "-subj", `/CN=${publicNames(o.spec)[0]}`], "an origin certificate request");
  writeFileSync(f("origin.ext"), `subjectAltName=${publicNames(o.spec).map((n) => `DNS:${n}`).join(",")}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  run("openssl", ["x509", "-req", "-in", f("origin.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca-key.pem"), "-CAcreateserial", "-days", "30", "-out", f("origin.pem"), "-extfile", f("origin.ext")], "signing the origin certificate");
  for (const k of ["ca-key.pem", "origin-key.pem"]) chmodSync(f(k), 0o600);
  for (const x of ["origin.csr", "origin.ext", "ca.srl"]) rmSync(f(x), { force: true });
  return { cert: f("origin.pem"), key: f("origin-key.pem") };
}

/**
 * What the lab runs differently from the spec, because the real thing can't run on this
 * machine. plan/apply against the lab apply these and say so.
 */
export function labOverrides(spec: Spec, internet: string | undefined): LabOverrides {
  const out: { edgeEngine?: "haproxy"; dnsEngine?: "bind9"; forwardFrom?: string[] } = {};
  if (spec.edge.engine === "traefik") out.edgeEngine = "haproxy";
  if (spec.dns.engine === "freeipa") out.dnsEngine = "bind9";
  if (internet && spec.wireguard) out.forwardFrom = [`${internet}/32`];
  return out;
}

/** .fmc/lab/known_hosts: each host's ed25519 key (a VM's as lab up learnt it, a container's from its root). */
function writeKnownHosts(stateDir: string, s: LabState): string {
  const dir = join(stateDir, "lab");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const knownHosts = join(dir, "known_hosts");
  const lines = s.hosts.flatMap((h) => {
    const text = h.hostKey ?? (h.vm ? undefined : readFileSync(join(h.dir, "merged/etc/ssh/ssh_host_ed25519_key.pub"), "utf8"));
    if (!text) return [];
    const pub = text.trim().split(" ");
    return [`${h.address} ${pub[0]} ${pub[1]}`];
  });
  writeFileSync(knownHosts, lines.join("\n") + "\n", { mode: 0o600 });
  return knownHosts;
}

function writeInventory(o: UpOptions, s: LabState, tls: { cert: string; key: string }): void {
  const knownHosts = writeKnownHosts(o.stateDir, s);
  const inv: LabInventoryFile = {
    lab: s.lab,
    knownHosts,
    hosts: s.hosts.map((h) => ({ name: h.name, address: h.address, port: 22, user: "root" })),
    overrides: labOverrides(o.spec, s.internet),
    originCertificate: tls,
  };
  writeFileSync(labInventoryPath(o.stateDir), JSON.stringify(inv, null, 2) + "\n", { mode: 0o600 });
}


function netnsPids(ns: string): number[] {
  const r = tryRun("ip", ["netns", "pids", ns]);
  return r.status === 0 ? r.stdout.split("\n").filter(Boolean).map(Number) : [];
}

/** An nspawn process: a pid from lab.json is signalled only when it still is one. */
function isNspawn(pid: number): boolean {
  return cmdlineOf(pid)[0]?.endsWith("systemd-nspawn") ?? false;
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
  const namespaces = tryRun("ip", ["netns", "list"]).stdout.split("\n").map((l) => l.split(" ")[0]!).filter((n) => n.startsWith(`${LABEL}-`) || (n === INTERNET_NS && (state?.internet !== undefined || isLabInternet())));
  // 1. ask each container to power off, then make sure nothing is left: no process in
  //    the namespaces, no nspawn (a zombie does not count)
  const busy = () => namespaces.some((n) => netnsPids(n).length > 0) || hosts.some((h) => h.pid && alive(h.pid));
  const settle = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && busy()) await sleep(50);
  };
  // VMs by their own pids (checked to be our QEMU), then any QEMU still labelled fmclab
  await Promise.all((state?.hosts ?? []).filter((h) => h.vm).map((h) => stopVm(h.pid && isOurQemu(h.pid, h.dir) ? h.pid : undefined, h.dir)));
  for (const pid of vmPids(`${LABEL}-`)) tryRun("kill", ["-KILL", String(pid)]);
  for (const h of hosts) tryRun("kill", ["-TERM", String(h.pid)]);
  await settle(5000);
  for (const n of namespaces) for (const pid of netnsPids(n)) tryRun("kill", ["-KILL", String(pid)]);
  for (const h of hosts) if (h.pid && alive(h.pid)) tryRun("kill", ["-KILL", String(h.pid)]);
  await settle(5000);
  // 2. mounts: every overlay under the lab root, deepest first
  const mounts = readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" ")[1] ?? "").filter((m) => m.startsWith(join(LAB_ROOT, "labs")));
  for (const m of mounts.sort((a, b) => b.length - a.length)) {
    if (tryRun("umount", [m]).status !== 0) tryRun("umount", ["-l", m]);
    removed++;
  }
  // 2b. the containers' data disks (their filesystems went with the containers' mounts)
  removed += detachDataDisks();
  // 3. namespaces (their veths go with them) and this machine's link (its routes go with it)
  for (const n of namespaces) {
    if (tryRun("ip", ["netns", "del", n]).status === 0) removed++;
  }
  const links = (JSON.parse(tryRun("ip", ["-j", "link", "show"]).stdout || "[]") as Array<{ ifname: string }>).map((l) => l.ifname.split("@")[0]!);
  for (const l of links.filter((x) => ROOT_LINK.test(x))) {
    if (tryRun("ip", ["link", "del", l]).status === 0) removed++;
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
      running: h.vm ? !!h.pid && isOurQemu(h.pid, h.dir) : netnsPids(h.netns).length > 0,
      ssh: await waitForPort(h.address, 22, 300),
    })),
  );
  return { state, hosts };
}

/**
 * The command line that runs `args` as root on a lab host: nsenter into a container (all
 * of its namespaces) or into the internet namespace (with this machine's files), ssh with
 * the lab's key into a VM. The program first.
 */
export function labExecCommand(hostName: string, args: readonly string[]): string[] {
  const state = readState();
  if (!state) throw new FmcError("LAB_HOST", "no lab is up", "fmc lab up");
  if (hostName === INTERNET_NS) {
    if (!state.internet) throw new FmcError("LAB_HOST", `the lab ${state.lab} has no internet namespace (its spec has no gateway host with a publicAddress)`);
    return ["nsenter", "--net=/run/netns/" + INTERNET_NS, "--", ...args];
  }
  const h = state.hosts.find((x) => x.name === hostName);
  if (!h?.pid) throw new FmcError("LAB_HOST", `no lab host ${hostName}`, `hosts: ${[...state.hosts.map((x) => x.name), ...(state.internet ? [INTERNET_NS] : [])].join(", ")}`);
  if (h.vm) {
    const dir = join(state.stateDir, "lab");
    return ["ssh", "-i", labKeyPath(state.stateDir), "-o", `UserKnownHostsFile=${join(dir, "known_hosts")}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", `root@${h.address}`, "--", args.map(quote).join(" ")];
  }
  // the container's PID 1 is the nspawn process's child
  const leader = tryRun("pgrep", ["-P", String(h.pid)]).stdout.trim().split("\n")[0];
  if (!leader) throw new FmcError("LAB_HOST", `${hostName} is not running`, "fmc lab status");
  return ["nsenter", "-t", leader, "-m", "-u", "-i", "-n", "-p", "--", ...args];
}

/** How `fmc lab ssh` reaches a lab host: as root, with the lab's key, against the host keys lab up recorded. */
export interface LabSshTarget {
  readonly host: string;
  readonly address: string;
  readonly port: number;
  readonly user: string;
  /** The lab's own private key (.fmc/lab/lab_key, 0600): every lab host accepts it. */
  readonly identityFile: string;
  /** The host keys lab up read from each host (.fmc/lab/known_hosts). */
  readonly knownHostsFile: string;
}

export function labSshTarget(hostName: string): LabSshTarget {
  const state = readState();
  if (!state) throw new FmcError("LAB_HOST", "no lab is up", "fmc lab up");
  if (hostName === INTERNET_NS) throw new FmcError("LAB_HOST", `the ${INTERNET_NS} namespace runs no SSH server: it is this machine's own files in another network namespace`, `fmc lab exec ${INTERNET_NS} -- CMD [ARG…]`);
  const h = state.hosts.find((x) => x.name === hostName);
  if (!h) throw new FmcError("LAB_HOST", `no lab host ${hostName}`, `hosts: ${state.hosts.map((x) => x.name).join(", ")}`);
  // the address, port and user lab up wrote into the inventory plan and apply use
  return { host: h.name, address: h.address, port: 22, user: "root", identityFile: labKeyPath(state.stateDir), knownHostsFile: join(state.stateDir, "lab", "known_hosts") };
}

/** Runs a command on a lab host (or in the internet namespace), as root, and collects its output. */
export function labExec(hostName: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): { status: number | null; stdout: string; stderr: string } {
  const [cmd, ...rest] = labExecCommand(hostName, args);
  const r = spawnSync(cmd!, rest, { encoding: "utf8", timeout: opts.timeoutMs, input: opts.input });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const hostOf = (name: string): { state: LabState; host: LabHost } => {
  const state = readState();
  const host = state?.hosts.find((h) => h.name === name);
  if (!state || !host) throw new FmcError("LAB_HOST", `no lab host ${name}`);
  return { state, host };
};

/**
 * Pulls the plug: the host's links go dark on the switch (nobody hears it, not even its
 * ARP), every process in it dies at once, and its addresses are gone, as after a power
 * cut. `labPowerOn` boots it again from its own disk (the overlay keeps its files).
 */
export async function labPowerOff(name: string): Promise<void> {
  requireRoot();
  const { host } = hostOf(name);
  if (host.vm) throw new FmcError("LAB_VM", `${name} is a VM: pulling its plug is not supported yet`, "reboot it from inside: fmc lab exec HOST -- systemctl reboot");
  for (const n of host.nics ?? []) run("ip", ["-n", SWITCH_NS, "link", "set", "dev", n.port, "down"], `unplugging ${name}`);
  if (host.pid) tryRun("kill", ["-KILL", String(host.pid)]);
  for (const pid of netnsPids(host.netns)) tryRun("kill", ["-KILL", String(pid)]);
  const deadline = Date.now() + 5000;
  while (netnsPids(host.netns).length && Date.now() < deadline) await sleep(20);
  for (const n of host.nics ?? []) run("ip", ["-n", host.netns, "addr", "flush", "dev", n.ifname], `clearing ${name}'s addresses`);
}

/** Boots a powered-off host: its addresses back, plugged in, until SSH answers. */
export async function labPowerOn(name: string, timeoutMs = 60_000): Promise<void> {
  requireRoot();
  const { state, host } = hostOf(name);
  if (host.vm) throw new FmcError("LAB_VM", `${name} is a VM: powering it on from the lab is not supported yet`);
  for (const n of host.nics ?? []) {
    run("ip", ["-n", host.netns, "addr", "add", n.address, "dev", n.ifname], `addressing ${name}`);
    run("ip", ["-n", host.netns, "link", "set", "dev", n.ifname, "up"], `${name} ${n.ifname} up`);
  }
  if (host.defaultVia) run("ip", ["-n", host.netns, "route", "replace", "default", "via", host.defaultVia], `default route of ${name}`);
  host.pid = boot(host);
  writeState(state);
  for (const n of host.nics ?? []) run("ip", ["-n", SWITCH_NS, "link", "set", "dev", n.port, "up"], `plugging ${name} in`);
  if (!(await waitForPort(host.address, 22, timeoutMs))) throw new FmcError("LAB_BOOT", `${name} did not answer SSH within ${timeoutMs / 1000} s`, `see ${join(host.dir, "console.log")}`);
}

/** What changes when a host boots: the VM kernel's boot id; a container's PID 1 (it shares this machine's kernel). */
function bootMark(h: LabHost): string | undefined {
  if (!h.vm) return h.pid ? tryRun("pgrep", ["-P", String(h.pid)]).stdout.trim().split("\n")[0] || undefined : undefined;
  const r = labExec(h.name, ["cat", "/proc/sys/kernel/random/boot_id"], { timeoutMs: 10_000 });
  return r.status === 0 ? r.stdout.trim() || undefined : undefined;
}

/**
 * Reboots a lab host from inside (`systemctl reboot`: services stop in order, as on a
 * real machine) and waits until it has booted again and SSH answers. A VM reboots its
 * own kernel; a container's nspawn exits on the reboot request and is booted again on
 * its own disk. Returns the milliseconds from the request until SSH answered.
 */
export async function labReboot(name: string, timeoutMs = 240_000): Promise<number> {
  requireRoot();
  const { state, host } = hostOf(name);
  const before = bootMark(host);
  if (!before) throw new FmcError("LAB_HOST", `${name} is not running`, "fmc lab status");
  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  const late = () => new FmcError("LAB_BOOT", `${name} did not come back within ${timeoutMs / 1000} s of its reboot`, `see ${join(host.dir, "console.log")}`);
  // the connection may drop before the command returns: the new boot is what counts
  labExec(name, ["systemctl", "reboot"], { timeoutMs: 15_000 });
  if (!host.vm) {
    while (host.pid && alive(host.pid)) {
      if (Date.now() > deadline) throw late();
      await sleep(100);
    }
    host.pid = boot(host);
    writeState(state);
  }
  for (;;) {
    if (Date.now() > deadline) throw late();
    if (await waitForPort(host.address, 22, Math.min(5000, Math.max(0, deadline - Date.now())))) {
      const now = bootMark(host);
      if (now && now !== before) return Date.now() - t0;
    }
    await sleep(500);
  }
}
