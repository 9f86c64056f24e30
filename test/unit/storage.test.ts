// The storage and longhorn-prereqs phases planned from facts: the captured LVM states of a
// real disk (test/fixtures/lvm, scripts/capture-lvm-fixture.sh) plus the blkid answers,
// kernel support, files and units a host reports; the blank-device rule run for real
// against image files; mount units checked by systemd-analyze verify; Longhorn's
// schedulable capacity against what the charts request.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { blkidGuard, DM_GUARD, lvmChanges } from "../../src/ops/lvm.js";
import { mountUnit } from "../../src/ops/mount.js";
import { EXPORTS, EXPORTS_D, NFSD_GUARD, NFS_DROPIN, NFS_UNIT } from "../../src/ops/nfs.js";
import { unitPath } from "../../src/ops/unit.js";
import { storage } from "../../src/phases/storage.js";
import { LONGHORN_MODULES_FILE, longhornPrereqs } from "../../src/phases/longhorn.js";
import { exportsFile, lvmPlan, lvmService, LVM_SCRIPT_PATH, LVM_SERVICE, mkfsIfBlank, nfsServerDropIn, volumeMountUnits } from "../../src/render/storage.js";
import { longhornDisks, placeableGiB } from "../../src/model/capacity.js";
import { manifests } from "../../src/render/kubernetes.js";
import { longhornCapacity } from "../../src/model/capacity.js";
import { ignitionConfig } from "../../src/render/ignition.js";
import { loadSpec } from "../../src/model/load.js";
import { SEED_YAML } from "../../src/model/seed.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import type { Change } from "../../src/ops/change.js";
import { contextFor, LVM_FIXTURE_FRESH_STEPS, LVM_FIXTURE_SPEC, requireTool, ROOT, tempDir } from "../helpers.js";
import { FmcError } from "../../src/errors.js";

const ctx = { host: "storage1", phase: "storage", mask: (t: string) => t };
/** The layout the captured LVM fixtures (test/fixtures/lvm/) were made with. */
const spec = LVM_FIXTURE_SPEC;
const withSize = (name: string, size: string) => ({ ...spec, volumes: spec.volumes.map((v) => (v.name === name ? { ...v, size } : v)) });

interface Fake {
  os?: string;
  files?: Record<string, string>;
  units?: Record<string, [string, string]>;
  packages?: string[];
  guards?: Record<string, number>;
  /** Octal modes of files other than 644 (755 for *.sh). */
  modes?: Record<string, string>;
}

/** Facts as the fact script prints them: a captured LVM state plus what the test says. */
function facts(state: string | undefined, f: Fake = {}): HostFacts {
  const captured = state ? readFileSync(join(ROOT, "test/fixtures/lvm", `${state}.txt`), "utf8").split("\n").filter((l) => !l.startsWith("#")).join("\n") : "";
  const files = Object.entries(f.files ?? {}).map(([p, c]) => `${p} ${f.modes?.[p] ?? (p.endsWith(".sh") ? 755 : 644)} root root ${Buffer.from(c).toString("base64")}`);
  const units = Object.entries(f.units ?? {}).flatMap(([u, [a, e]]) => [`Id=${u}`, `ActiveState=${a}`, `UnitFileState=${e}`, ""]);
  const guards = Object.entries(f.guards ?? {}).flatMap(([id, code]) => ["@guard", `${id} ${code}`]);
  const out = ["@os", f.os ?? "ID=debian", "@files", ...files, "@units", ...units, "@packages", ...(f.packages ?? []).map((p) => `${p} install ok installed`), ...guards, captured, "@end"];
  return parseFacts("storage1", out.join("\n"));
}

/** Guards of a captured state: blkid finds what lsblk shows, the kernel has device-mapper and nfsd. */
function guardsOf(f: HostFacts, blank: string[] = []): Record<string, number> {
  const g: Record<string, number> = { [DM_GUARD]: 0, [NFSD_GUARD]: 0, [EXPORTS_D.id]: 0 };
  g[blkidGuard("/dev/vdb")] = f.blockDevices.get("/dev/vdb")?.fstype ? 0 : 2;
  for (const v of spec.volumes) g[blkidGuard(`/dev/data/${v.name}`)] = blank.includes(v.name) ? 2 : f.blockDevices.get(`/dev/mapper/data-${v.name.replace(/-/g, "--")}`)?.fstype ? 0 : 2;
  return g;
}
const at = (state: string, extra: Fake = {}) => facts(state, { ...extra, guards: { ...guardsOf(facts(state)), ...extra.guards } });
const titles = (cs: Change[]) => cs.map((c) => c.title);
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof FmcError ? `${e.code}: ${e.message}` : String(e);
  }
  return "no error";
};

test("LVM on a blank disk (blkid exit 2): physical volume, group, volumes, filesystems", () => {
  const changes = lvmChanges(at("fresh"), spec, ctx);
  assert.deepEqual(titles(changes), LVM_FIXTURE_FRESH_STEPS);
  // every new filesystem and the physical volume are guarded by blkid on the host too
  assert.match(changes[0]!.commands[0]!.shell, /blkid -p \/dev\/vdb .*if \[ "\$rc" != 2 \]; then .*exit 1; fi; pvcreate --yes \/dev\/vdb$/);
  assert.match(changes[2]!.commands[0]!.shell, /^ {2}2\) mkfs\.ext4 -L postgres_lv \/dev\/data\/postgres_lv ;;$/m);
});

test("LVM that exists and is formatted: nothing to do; an inactive group is activated first", () => {
  assert.deepEqual(lvmChanges(at("formatted-mounted"), spec, ctx), []);
  // the same LVs without device nodes (lsblk shows no children): vgchange -ay, nothing else
  const f = at("formatted-mounted");
  const inactive = { ...f, blockDevices: new Map([...f.blockDevices].filter(([p]) => !p.startsWith("/dev/mapper/"))) } as HostFacts;
  const changes = lvmChanges(inactive, spec, ctx);
  assert.equal(changes[0]!.title, "activate volume group data (postgres_lv, shared-lv, longhorn_lv inactive)");
  assert.deepEqual(changes[0]!.commands.map((c) => c.display), ["vgchange -ay data"]);
});

test("a volume grown in the spec grows online with its filesystem; without free space it is refused with the numbers", () => {
  // grown: the disk grew by 1 GiB, postgres_lv took 512 MiB of it, 512 MiB are free
  const g = lvmChanges(at("grown"), withSize("postgres_lv", "2G"), ctx);
  assert.deepEqual(titles(g), ["grow data/postgres_lv from 1.5 GiB to 2G with its ext4 filesystem"]);
  assert.deepEqual(g[0]!.commands.map((c) => c.display), ["lvextend -r -L 2G data/postgres_lv"]);
  assert.deepEqual(lvmChanges(at("grown"), withSize("postgres_lv", "1536M"), ctx), []);
  assert.equal(code(() => lvmChanges(at("formatted-mounted"), withSize("postgres_lv", "2G"), ctx)), "NO_SPACE: storage1: growing data/postgres_lv from 1 GiB to 2G needs 1 GiB; volume group data has 0 GiB free");
  assert.match(code(() => lvmChanges(at("grown"), withSize("postgres_lv", "3G"), ctx)), /^NO_SPACE: .*needs 1\.5 GiB; volume group data has 0\.5 GiB free$/);
});

test("shrinking or another filesystem is refused with an explanation", () => {
  assert.equal(code(() => lvmChanges(at("grown"), spec, ctx)), "SHRINK_REFUSED: storage1: data/postgres_lv is 1.5 GiB, the spec asks for 1G (1 GiB): fmc never shrinks a volume");
  const fs = { ...spec, volumes: spec.volumes.map((v) => (v.name === "shared-lv" ? { ...v, filesystem: "ext4" as const } : v)) };
  assert.equal(code(() => lvmChanges(at("formatted-mounted"), fs, ctx)), "FILESYSTEM_CHANGED: storage1: /dev/data/shared-lv holds xfs, the spec says ext4; fmc never reformats a volume");
});

test("only blkid's 'no signature' leads to a new filesystem: any other answer stops the plan", () => {
  // lvs-created: the volumes exist without filesystems (lsblk shows none)
  assert.deepEqual(titles(lvmChanges(at("lvs-created"), spec, ctx)), ["make ext4 on /dev/data/postgres_lv", "make xfs on /dev/data/shared-lv", "make ext4 on /dev/data/longhorn_lv"]);
  const ambivalent = at("lvs-created", { guards: { [blkidGuard("/dev/data/postgres_lv")]: 8 } });
  assert.match(code(() => lvmChanges(ambivalent, spec, ctx)), /^BLKID_FAILED: storage1: blkid -p \/dev\/data\/postgres_lv exited 8 \(ambivalent/);
  const ioError = at("fresh", { guards: { [blkidGuard("/dev/vdb")]: 4 } });
  assert.match(code(() => lvmChanges(ioError, spec, ctx)), /^BLKID_FAILED: storage1: blkid -p \/dev\/vdb exited 4 \(usage or I\/O error\)/);
  // a signature lsblk does not name (a partition table): not formatted either
  assert.match(code(() => lvmChanges(at("lvs-created", { guards: { [blkidGuard("/dev/data/shared-lv")]: 0 } }), spec, ctx)), /^DEVICE_IN_USE: .*shared-lv holds a signature/);
});

test("the blank-device rule on the host: blkid -p decides, for real, on image files", (t) => {
  requireTool("blkid");
  requireTool("mkfs.ext4");
  const dir = tempDir(t);
  const run = (dev: string, path = process.env.PATH) => spawnSync("bash", ["-c", ["set -eu", ...mkfsIfBlank(dev, "ext4", "longhorn"), "echo done"].join("\n")], { encoding: "utf8", env: { ...process.env, PATH: path } });
  const blank = join(dir, "blank.img");
  writeFileSync(blank, Buffer.alloc(16 * 1024 * 1024));
  assert.equal(run(blank).status, 0);
  assert.match(spawnSync("blkid", ["-p", "-s", "TYPE", "-o", "value", blank], { encoding: "utf8" }).stdout, /^ext4$/m, "a blank image gets a filesystem");
  // a device with another filesystem is never touched
  const xfsLike = join(dir, "used.img");
  writeFileSync(xfsLike, Buffer.alloc(16 * 1024 * 1024));
  spawnSync("mkfs.ext4", ["-q", "-L", "keepme", xfsLike]);
  const before = readFileSync(xfsLike);
  assert.equal(run(xfsLike).status, 0);
  assert.ok(readFileSync(xfsLike).equals(before), "a device with a signature is left byte for byte");
  // blkid that cannot tell (exit 8): the script stops and mkfs never runs
  const bin = join(dir, "bin");
  spawnSync("mkdir", [bin]);
  writeFileSync(join(bin, "blkid"), "#!/bin/sh\nexit 8\n");
  writeFileSync(join(bin, "mkfs.ext4"), `#!/bin/sh\ntouch ${join(dir, "mkfs-ran")}\n`);
  chmodSync(join(bin, "blkid"), 0o755);
  chmodSync(join(bin, "mkfs.ext4"), 0o755);
  const r = run(blank, `${bin}:${process.env.PATH}`);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /blkid -p .*blank\.img failed \(exit 8\): not formatting a device that may hold data/);
  assert.equal(spawnSync("test", ["-e", join(dir, "mkfs-ran")]).status, 1, "mkfs did not run");
});

test("the rendered LVM script activates the group and formats only on blkid's 'no signature'", () => {
  const s = lvmPlan(contextFor());
  assert.match(s, /^vgchange -ay "\$VG" >\/dev\/null$/m);
  assert.doesNotMatch(s, /blkid -s TYPE -o value .* \|\| mkfs/);
  assert.equal((s.match(/^ {2}2\) mkfs\./gm) ?? []).length, 3);
  assert.doesNotMatch(s, /pvcreate --yes/);
  assert.equal(spawnSync("bash", ["-n"], { input: s }).status, 0);
});

test("exports: exactly the spec's exports and clients with their options (the shared one always root_squash)", () => {
  assert.equal(
    exportsFile(contextFor()),
    [
      "# Rendered by fmc from the cluster spec. Edit the spec, not this file.",
      "/srv/nfs/postgresql 10.17.3.14(rw,sync,no_subtree_check,no_root_squash)",
      "/srv/nfs/shared 10.17.4.0/24(rw,sync,no_subtree_check,root_squash)",
      "",
    ].join("\n"),
  );
});

test("mount units pass systemd-analyze verify, and a mismatched unit name does not", (t) => {
  requireTool("systemd-analyze");
  const c = contextFor();
  const dir = tempDir(t);
  const units = volumeMountUnits(c);
  for (const u of units) writeFileSync(join(dir, u.name), u.content);
  writeFileSync(join(dir, LVM_SERVICE), lvmService());
  const verify = (...files: string[]) => spawnSync("systemd-analyze", ["verify", ...files.map((f) => join(dir, f))], { encoding: "utf8", env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } });
  const r = verify(...units.map((u) => u.name));
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(units.map((u) => u.name), ["srv-nfs-postgresql.mount", "srv-nfs-shared.mount", "mnt-longhorn\\x2ddisk.mount"]);
  writeFileSync(join(dir, "srv-nfs-other.mount"), units[0]!.content);
  assert.notEqual(verify("srv-nfs-other.mount").status, 0);
});

/** The storage phase on the seed spec with test volumes sized for the captured 8 GiB disk. */
function phaseContext(): PhaseContext {
  const c = contextFor();
  const st = c.spec.storage!;
  const spec = {
    ...c.spec,
    storage: {
      ...st,
      volumes: [
        { name: "postgres_lv", size: "1G", filesystem: "ext4" as const, mount: "/srv/nfs/postgresql" },
        { name: "shared-lv", size: "1G", filesystem: "xfs" as const, mount: "/srv/nfs/shared" },
        { name: "longhorn_lv", size: "100%FREE", filesystem: "ext4" as const, mount: "/mnt/longhorn-disk" },
      ],
    },
  };
  return { render: { ...c, spec }, mask: (t: string) => t, loginUser: () => "root" };
}
const storageHost = (pc: PhaseContext) => pc.render.topo.host("storage1");

/** What the host reports once the phase's changes have run. */
function appliedFake(pc: PhaseContext): Fake {
  const r = pc.render;
  const units = volumeMountUnits(r);
  return {
    packages: ["nfs-kernel-server", "lvm2", "xfsprogs"],
    files: {
      [LVM_SCRIPT_PATH]: lvmPlan(r),
      [unitPath(LVM_SERVICE)]: lvmService(),
      ...Object.fromEntries(units.map((u) => [unitPath(u.name), u.content])),
      [NFS_DROPIN]: nfsServerDropIn(r),
      [EXPORTS]: exportsFile(r),
    },
    units: {
      [LVM_SERVICE]: ["active", "enabled"],
      [NFS_UNIT]: ["active", "enabled"],
      ...Object.fromEntries(units.map((u) => [u.name, ["active", "enabled"] as [string, string]])),
    },
  };
}
const applied = (pc: PhaseContext, state = "formatted-mounted") => at(state, appliedFake(pc));

test("storage phase: a fresh host gets packages, LVM, boot units, mounts, exports and nfs-server; a re-plan is empty", () => {
  const pc = phaseContext();
  const h = storageHost(pc);
  const fresh = storage.plan(pc, h, at("fresh"));
  assert.deepEqual(titles(fresh).slice(0, 8), ["install nfs-kernel-server, lvm2, xfsprogs", ...LVM_FIXTURE_FRESH_STEPS]);
  const t = titles(fresh);
  assert.ok(t.includes(`create ${LVM_SCRIPT_PATH}`));
  assert.ok(t.includes(`create ${unitPath(mountUnit("/srv/nfs/postgresql"))}`));
  assert.ok(t.includes(`enable, start ${mountUnit("/srv/nfs/postgresql")}`));
  assert.ok(t.indexOf(`create ${EXPORTS}`) > t.indexOf(`enable, start ${mountUnit("/srv/nfs/shared")}`), "exports after the mounts");
  assert.equal(t.at(-1), `enable, start ${NFS_UNIT}`);
  const exp = fresh.find((c) => c.title === `create ${EXPORTS}`)!;
  assert.deepEqual(exp.commands.map((c) => c.display).slice(1), [`write ${EXPORTS} (0644)`, "exportfs -ra (the previous /etc/exports back if it fails)"]);
  // the single point of failure is a warning of the phase: every plan states it, changes or not
  assert.deepEqual(fresh.flatMap((c) => c.notes).filter((n) => n.includes("single point")), []);
  assert.match(storage.warnings!(pc).join("\n"), /PostgreSQL's data \(\/srv\/nfs\/postgresql\), the nfs-shared StorageClass \(\/srv\/nfs\/shared\) live only on storage1: it is a single point of failure/);
  // after apply, the host reports what the phase wrote: nothing to do
  assert.deepEqual(storage.plan(pc, h, applied(pc)), []);
  // exports.d holding a foreign export is moved aside, then exported again
  const foreign = storage.plan(pc, h, at("formatted-mounted", { ...appliedFake(pc), guards: { [EXPORTS_D.id]: 1 } }));
  assert.deepEqual(titles(foreign), [EXPORTS_D.title, `export ${EXPORTS}`]);
  // a run that stopped after writing /etc/exports (its pending mark is there) exports again
  const pending = storage.plan(pc, h, at("formatted-mounted", { ...appliedFake(pc), files: { ...appliedFake(pc).files, "/var/lib/fmc/pending/nfs-server.service": "" } }));
  assert.deepEqual(titles(pending).slice(0, 1), [`export ${EXPORTS} (an earlier run did not finish)`]);
});

test("storage phase: a host whose kernel has no device-mapper or nfsd is reported, not failed at plan time", () => {
  const pc = phaseContext();
  const container = at("fresh", { guards: { [DM_GUARD]: 1, [NFSD_GUARD]: 1 } });
  const plan = storage.plan(pc, storageHost(pc), container);
  assert.equal(plan.length, 1);
  assert.equal(plan[0]!.title, "storage cannot be set up on storage1: its kernel lacks device-mapper and the NFS server");
  assert.match(plan[0]!.notes[0]!, /no \/dev\/mapper\/control, and modprobe -n dm_mod fails/);
  // apply stops on it with the reason
  const r = spawnSync("bash", ["-c", plan[0]!.commands[0]!.shell], { encoding: "utf8" });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^fmc: storage1's kernel has no device-mapper/);
});

test("Longhorn capacity: disks × 70% per node, replicas on different nodes, against the charts' volumes", () => {
  assert.equal(Math.round(placeableGiB([140, 140, 140, 28], 2)), 224);
  assert.equal(Math.round(placeableGiB([28, 28, 28, 28], 2)), 56);
  // one big node cannot hold both copies: 100 + 10 + 10 with 2 replicas places 20
  assert.equal(Math.round(placeableGiB([100, 10, 10], 2)), 20);
  assert.equal(Math.round(placeableGiB([30, 30, 30], 3)), 30);
  const seed = longhornCapacity(loadSpec(SEED_YAML).spec!);
  assert.deepEqual(seed.disks.map((d) => `${d.host} ${d.sizeGiB}`), ["worker1 200", "worker2 200", "worker3 200", "storage1 40"]);
  assert.equal(seed.replicas, 2);
  assert.equal(Math.round(seed.placeableGiB), 224);
  // 27 GiB on 2 replicas, and 174 GiB of services that copy themselves on the 1-replica class (half the weight)
  assert.deepEqual(seed.claims.map((x) => `${x.service} ${x.replicas}`), ["prometheus 2", "prometheus 2", "grafana 2", "elasticsearch 1", "redis 1", "kafka 1"]);
  assert.equal(seed.requestedGiB, 27 + 174 / 2);
  // the seed as reviewed (40 GiB worker disks) is refused with the numbers
  const old = loadSpec(SEED_YAML.replace(/sizeGiB: 200/g, "sizeGiB: 40"));
  const errs = old.problems.filter((p) => p.severity === "error");
  assert.equal(errs.length, 1);
  assert.match(errs[0]!.message, /^Longhorn can place 56 GiB with 2 replicas \(disks: worker1 40 GiB, worker2 40 GiB, worker3 40 GiB, storage1 40 GiB; 30% of each reserved\); the charts request 114 GiB counted at 2 replicas \(Prometheus server 1 × 20 GiB, Alertmanager 1 × 2 GiB, Grafana 1 × 5 GiB, Elasticsearch nodes 3 × 30 GiB at 1 replica, Redis master and replicas 3 × 8 GiB at 1 replica, Kafka controllers 3 × 20 GiB at 1 replica\)$/);
  // a 1-replica volume needs one node with room for it: four agents with 700 GiB schedulable
  // hold three 750 GiB Elasticsearch volumes in sum, but no node holds one
  const w3 = /^ {2}- \{ name: worker3, .*$/m.exec(SEED_YAML)![0];
  const wide = loadSpec(
    SEED_YAML.replace(w3, `${w3}\n${w3.replace("worker3", "worker4").replace("10.17.4.26", "10.17.4.28")}`)
      .replace(/sizeGiB: 200/g, "sizeGiB: 1000").replace("size: 30Gi }", "size: 750Gi }")
      .replace(/kafka: +\{ repo/, "kafka: { enabled: false, repo").replace(/redis: +\{ repo/, "redis: { enabled: false, repo"),
  );
  assert.match(wide.problems.filter((p) => p.severity === "error").map((p) => p.message).join("\n"), /^a 750 GiB volume needs a node with that much schedulable space; Longhorn can place .* at most 700 GiB on one node$/m);
  // one volume bigger than two nodes can each hold, although the sum fits
  const big = loadSpec(
    SEED_YAML.replace(/sizeGiB: 200/g, "sizeGiB: 100").replace(/(prometheus: .*)size: 20Gi \}/, "$1size: 80Gi }")
      .replace(/elasticsearch: +\{ repo/, "elasticsearch: { enabled: false, repo").replace(/kibana: +\{ enabled: true \}/, "kibana: { enabled: false }").replace(/fluentBit: +\{ repo/, "fluentBit: { enabled: false, repo").replace(/kafka: +\{ repo/, "kafka: { enabled: false, repo").replace(/redis: +\{ repo/, "redis: { enabled: false, repo"),
  );
  assert.match(big.problems.filter((p) => p.severity === "error").map((p) => p.message).join("\n"), /^a 80 GiB volume needs 2 nodes with that much schedulable space; Longhorn can place .* at most 70 GiB for one volume$/m);
});

test("Longhorn settings and disks: replicas, reserved share, worker disks formatted only when blank, K3s after the mount", () => {
  const c = contextFor();
  const lh = manifests(c).find((m) => m.file === "50-helmchart-longhorn.yaml")!.objects[0] as { spec: { valuesContent: string } };
  assert.match(lh.spec.valuesContent, /defaultReplicaCount: 2\n/);
  assert.match(lh.spec.valuesContent, /defaultClassReplicaCount: 2\n/);
  assert.match(lh.spec.valuesContent, /storageReservedPercentageForDefaultDisk: 30\n/);
  assert.deepEqual(longhornDisks(c.spec).map((d) => `${d.host}:${d.device}:${d.mount}`), ["worker1:/dev/vdb:/mnt/longhorn-disk", "worker2:/dev/vdb:/mnt/longhorn-disk", "worker3:/dev/vdb:/mnt/longhorn-disk", "storage1:/dev/data/longhorn_lv:/mnt/longhorn-disk"]);
  type Ign = { storage: { files: Array<{ path: string; contents: { source: string } }> }; systemd: { units: Array<{ name: string; dropins?: Array<{ contents: string }> }> } };
  const text = (ign: Ign, path: string) => Buffer.from(ign.storage.files.find((f) => f.path === path)!.contents.source.split(",")[1]!, "base64").toString();
  const w = ignitionConfig(c, c.topo.host("worker1")) as unknown as Ign;
  assert.match(text(w, "/opt/fmc/longhorn-disk.sh"), /^ {2}2\) mkfs\.ext4 -L longhorn \/dev\/vdb ;;$/m);
  assert.match(text(w, "/etc/rancher/k3s/config.yaml.d/50-fmc-longhorn.yaml"), /^node-label\+:\n {2}- node\.longhorn\.io\/create-default-disk=true$/m);
  assert.ok(w.systemd.units.some((u) => u.name === "mnt-longhorn\\x2ddisk.mount"));
  for (const host of ["worker1", "storage1"]) {
    const ign = ignitionConfig(c, c.topo.host(host)) as unknown as Ign;
    assert.match(ign.systemd.units.find((u) => u.name === "k3s-agent.service")!.dropins![0]!.contents, /^RequiresMountsFor=\/mnt\/longhorn-disk$/m, host);
  }
  // servers keep their disks
  const m = ignitionConfig(c, c.topo.host("master1")) as unknown as Ign;
  assert.equal(m.systemd.units.find((u) => u.name === "k3s.service")!.dropins, undefined);
});

test("longhorn-prereqs: packages, modules that exist, iscsid; a kernel without modules is said once, and a re-plan is empty", () => {
  const pc = phaseContext();
  const h = pc.render.topo.host("worker1");
  const none = { "module-loaded:iscsi_tcp": 1, "module-loadable:iscsi_tcp": 1, "module-loaded:nfsv4": 1, "module-loadable:nfsv4": 1, "module-loaded:dm_crypt": 1, "module-loadable:dm_crypt": 1 };
  const container = facts(undefined, { guards: none });
  const plan = longhornPrereqs.plan(pc, h, container);
  assert.deepEqual(titles(plan), ["install nfs-common, open-iscsi, cryptsetup, dmsetup", `create ${LONGHORN_MODULES_FILE}`, "enable, start iscsid.socket"]);
  const file = plan[1]!;
  assert.equal(file.file!.content, "# Managed by fmc: kernel modules Longhorn needs, loaded at boot.\n# not available on this kernel: iscsi_tcp, nfsv4, dm_crypt\n");
  assert.match(file.notes[0]!, /^kernel module iscsi_tcp is not available on this kernel .*Longhorn cannot attach volumes on this node/);
  const after = facts(undefined, { guards: none, packages: ["nfs-common", "open-iscsi", "cryptsetup", "dmsetup"], files: { [LONGHORN_MODULES_FILE]: file.file!.content }, units: { "iscsid.socket": ["active", "enabled"] } });
  assert.deepEqual(longhornPrereqs.plan(pc, h, after), []);
  // the spec gives worker1 a data disk; this container has none: said once, nothing tied to it
  assert.match(plan[0]!.notes.join("\n"), /\/dev\/vdb is not a block device on worker1: the spec's data disk is missing/);
  assert.ok(!plan.some((c) => c.file?.path.includes("fmc-longhorn-disk")));
  // a VM's kernel: loadable modules are persisted and loaded now
  const vm = facts(undefined, { guards: { ...none, "module-loadable:iscsi_tcp": 0, "module-loadable:nfsv4": 0, "module-loaded:dm_crypt": 0 }, packages: ["nfs-common", "open-iscsi", "cryptsetup", "dmsetup"], units: { "iscsid.socket": ["active", "enabled"] } });
  const v = longhornPrereqs.plan(pc, h, vm);
  assert.equal(v[0]!.file!.content, "# Managed by fmc: kernel modules Longhorn needs, loaded at boot.\niscsi_tcp\nnfsv4\ndm_crypt\n");
  assert.deepEqual(v[1]!.commands.map((x) => x.display), ["modprobe -a iscsi_tcp nfsv4"]);
  // on AlmaLinux, the rhel package names
  const alma = longhornPrereqs.plan(pc, h, facts(undefined, { os: "ID=almalinux\nID_LIKE=\"rhel centos fedora\"", guards: none }));
  assert.equal(alma[0]!.title, "install nfs-utils, iscsi-initiator-utils, cryptsetup, device-mapper");
});

test("longhorn-prereqs: a worker's data disk is formatted when blank and mounted, K3s ordered after the mount (as Ignition does); storage1's LV mount too; a re-plan is empty", () => {
  const pc = phaseContext();
  const h = pc.render.topo.host("worker1");
  const ready = { "module-loaded:iscsi_tcp": 0, "module-loaded:nfsv4": 0, "module-loaded:dm_crypt": 0, "block-device:/dev/vdb": 0 };
  const base = { guards: ready, packages: ["nfs-common", "open-iscsi", "cryptsetup", "dmsetup"], units: { "iscsid.socket": ["active", "enabled"] as [string, string] } };
  const first = facts(undefined, { ...base, files: { [LONGHORN_MODULES_FILE]: "# Managed by fmc: kernel modules Longhorn needs, loaded at boot.\niscsi_tcp\nnfsv4\ndm_crypt\n" } });
  const plan = longhornPrereqs.plan(pc, h, first);
  const paths = plan.flatMap((c) => (c.file ? [c.file.path] : []));
  assert.deepEqual(paths, ["/opt/fmc/longhorn-disk.sh", "/etc/systemd/system/fmc-longhorn-disk.service", "/etc/systemd/system/mnt-longhorn\\x2ddisk.mount", "/etc/rancher/k3s/config.yaml.d/50-fmc-longhorn.yaml", "/etc/systemd/system/k3s-agent.service.d/fmc-longhorn-disk.conf"]);
  // the same files Ignition writes on first boot
  const ign = ignitionConfig(pc.render, h) as unknown as { systemd: { units: Array<{ name: string; dropins?: Array<{ contents: string }> }> } };
  const dropIn = plan.at(-1)!;
  assert.equal(dropIn.file!.content, ign.systemd.units.find((u) => u.name === "k3s-agent.service")!.dropins![0]!.contents);
  assert.deepEqual(dropIn.commands.at(-1)!.display, "systemctl daemon-reload");
  assert.ok(plan.some((c) => c.title === "enable, start mnt-longhorn\\x2ddisk.mount"), plan.map((c) => c.title).join("\n"));
  const done = facts(undefined, {
    ...base,
    files: { [LONGHORN_MODULES_FILE]: "# Managed by fmc: kernel modules Longhorn needs, loaded at boot.\niscsi_tcp\nnfsv4\ndm_crypt\n", ...Object.fromEntries(plan.flatMap((c) => (c.file ? [[c.file.path, c.file.content]] : []))) },
    modes: { "/etc/rancher/k3s/config.yaml.d/50-fmc-longhorn.yaml": "600" },
    // the format service stays active after the boot or the apply that started the mount
    // (the mount Requires= it; RemainAfterExit): a plan that stopped it would unmount the disk
    units: { ...base.units, "fmc-longhorn-disk.service": ["active", "enabled"], "mnt-longhorn\\x2ddisk.mount": ["active", "enabled"] },
  });
  assert.deepEqual(longhornPrereqs.plan(pc, h, done).map((c) => c.title), []);
  // storage1: its LV is mounted by the storage phase; only K3s's ordering is added here
  const st = longhornPrereqs.plan(pc, pc.render.topo.host("storage1"), first);
  assert.deepEqual(st.flatMap((c) => (c.file ? [c.file.path] : [])), ["/etc/systemd/system/k3s-agent.service.d/fmc-longhorn-disk.conf"]);
});

test("no_root_squash asked for on the shared export is named as ignored: it is always exported root_squash", () => {
  // the seed leaves the options to their default (which carries no_root_squash for the database's export): no warning
  assert.deepEqual(loadSpec(SEED_YAML).problems.filter((p) => p.path.startsWith("storage.exports")), []);
  const yaml = SEED_YAML.replace("{ path: /srv/nfs/shared,     clients: [10.17.4.0/24] }", "{ path: /srv/nfs/shared, clients: [10.17.4.0/24], options: [rw, sync, no_root_squash] }");
  assert.notEqual(yaml, SEED_YAML);
  const r = loadSpec(yaml);
  assert.ok(r.spec, JSON.stringify(r.problems));
  const w = r.problems.filter((p) => p.severity === "warning" && p.path === "storage.exports[1].options");
  assert.equal(w.length, 1);
  assert.match(w[0]!.message, /no_root_squash is ignored on the shared export \/srv\/nfs\/shared/);
  const ctx = contextFor(yaml);
  assert.match(exportsFile(ctx), /^\/srv\/nfs\/shared 10\.17\.4\.0\/24\([^)]*\broot_squash\)/m);
  assert.doesNotMatch(exportsFile(ctx), /shared.*no_root_squash/);
});
