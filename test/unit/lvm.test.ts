// The LVM and mount operations planned from real facts: test/fixtures/lvm/*.txt were
// captured from a real kernel with real LVM (scripts/capture-lvm-fixture.sh: a QEMU VM
// with a blank 8 GiB /dev/vdb and an ext4 /dev/vdc), at four states of the same disk.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { lvmChanges } from "../../src/ops/lvm.js";
import { mountChanges, mountUnitText, mountUnit } from "../../src/ops/mount.js";
import { unitPath } from "../../src/ops/unit.js";
import { LVM_FIXTURE_FRESH_STEPS, LVM_FIXTURE_SPEC, ROOT } from "../helpers.js";

const ctx = { host: "storage1", phase: "storage", mask: (t: string) => t };
/** The layout the captured LVM fixtures (test/fixtures/lvm/) were made with. */
const spec = LVM_FIXTURE_SPEC;
const mounts = [
  { what: "/dev/data/postgres_lv", where: "/srv/nfs/postgresql", type: "ext4" },
  { what: "/dev/data/shared-lv", where: "/srv/nfs/shared", type: "xfs" },
];

/** A captured state, plus the mount units fmc would have written and started. */
function factsAt(state: string, unitsInstalled = false): HostFacts {
  const captured = readFileSync(join(ROOT, "test/fixtures/lvm", `${state}.txt`), "utf8").split("\n").filter((l) => !l.startsWith("#")).join("\n");
  const files = unitsInstalled ? mounts.map((m) => `${unitPath(mountUnit(m.where))} 644 root root ${Buffer.from(mountUnitText(m)).toString("base64")}`) : [];
  const units = unitsInstalled ? mounts.flatMap((m) => [`Id=${mountUnit(m.where)}`, "ActiveState=active", "UnitFileState=enabled", ""]) : [];
  return parseFacts("storage1", ["@os", "ID=debian", "@files", ...files, "@units", ...units, captured, "@end"].join("\n"));
}

test("real lsblk/vgs/lvs output parses: LVs by their device-mapper path, hyphens doubled", () => {
  const f = factsAt("formatted-mounted");
  assert.deepEqual(f.lvm.lvs.get("data/shared-lv"), { size: 1073741824, dmPath: "/dev/mapper/data-shared--lv" });
  assert.equal(f.lvm.vgs.get("data")?.free, 0);
  assert.equal(f.blockDevices.get("/dev/mapper/data-shared--lv")?.fstype, "xfs");
  assert.equal(f.blockDevices.get("/dev/vdb")?.fstype, "LVM2_member");
  assert.equal(f.mounts.get("/srv/nfs/shared")?.device, "/dev/mapper/data-shared--lv");
  assert.equal(factsAt("grown").lvm.vgs.get("data")?.free, 536870912);
});

test("LVM on a blank disk: a volume group, three volumes in order, three filesystems", () => {
  const titles = lvmChanges(factsAt("fresh"), spec, ctx).map((c) => c.title);
  assert.deepEqual(titles, LVM_FIXTURE_FRESH_STEPS);
  // a disk that holds a filesystem is never turned into LVM
  assert.throws(() => lvmChanges(factsAt("fresh"), { ...spec, device: "/dev/vdc" }, ctx), /\/dev\/vdc holds a ext4 filesystem; refusing/);
});

test("LVM after lvcreate: only the filesystems are missing", () => {
  assert.deepEqual(lvmChanges(factsAt("lvs-created"), spec, ctx).map((c) => c.title), [
    "make ext4 on /dev/data/postgres_lv",
    "make xfs on /dev/data/shared-lv",
    "make ext4 on /dev/data/longhorn_lv",
  ]);
});

test("LVM and mounts converge: nothing to do once formatted and mounted (also after the volume grew)", () => {
  for (const state of ["formatted-mounted", "grown"]) {
    const f = factsAt(state, true);
    // in "grown" postgres_lv was extended to 1.5 GiB, and the spec says so
    const s = state === "grown" ? { ...spec, volumes: spec.volumes.map((v) => (v.name === "postgres_lv" ? { ...v, size: "1536M" } : v)) } : spec;
    assert.deepEqual(lvmChanges(f, s, ctx), [], `${state}: lvm`);
    for (const m of mounts) assert.deepEqual(mountChanges(f, m, ctx), [], `${state}: ${m.where} is mounted from /dev/mapper, which is the same device`);
  }
  // a different device on the mount point is still noticed
  const other = mountChanges(factsAt("formatted-mounted", true), { ...mounts[0]!, what: "/dev/data/longhorn_lv" }, ctx);
  assert.ok(other.some((c) => c.title.startsWith("update") || c.title.startsWith("remount")));
});
