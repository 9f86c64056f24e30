// The lab's first boot with the real tools (issue 20): the seed's rendered Ignition run by
// Debian's Ignition 2.14 against a root directory, and the NoCloud ISO built as
// terraform-provider-libvirt builds it, read back. Root directories are throwaway ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, statSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { renderAll } from "../../src/render/index.js";
import { applyIgnitionPresets, buildNoCloudIso, firstBootOf, IGNITION_BIN, IGNITION_RESULT, isoVolumeId, NOCLOUD_SEED, runIgnition, seedFromIso } from "../../src/lab/firstboot.js";
import { FmcError } from "../../src/errors.js";
import { LAB_VM_LIMITS, labVmShape, TERRAFORM_LIBVIRT_MAIN, vmShapes } from "../../src/lab/shape.js";
import { contextFor, tempDir } from "../helpers.js";
import { spawnSync } from "node:child_process";

const ctx = contextFor();
const artifacts = renderAll(ctx);
const haveXorriso = spawnSync("sh", ["-c", "command -v xorriso"]).status === 0;

test("every seed host's first-boot files are found where fmc render writes them", () => {
  for (const h of ctx.spec.hosts) {
    const f = firstBootOf(artifacts, h.name);
    if (h.os === "flatcar") {
      assert.ok(f.ignition, `${h.name}: Ignition`);
      assert.equal(f.cloudInit, undefined);
      assert.equal((JSON.parse(f.ignition) as { ignition: { version: string } }).ignition.version.split(".")[0], "3");
    } else if (h.vm) {
      assert.ok(f.cloudInit, `${h.name}: cloud-init`);
      assert.match(f.cloudInit.userData, /^#cloud-config\n/);
      assert.match(f.cloudInit.networkConfig, new RegExp(`${h.name === "firewall1" ? "dhcp4" : h.address.replace(/\./g, "\\.")}`));
      assert.equal(f.cloudInit.metaData, "", "the rendered disk sets no meta_data: the provider writes it empty");
    } else {
      // vps1: not a VM of the libvirt host, so no first-boot files from fmc
      assert.deepEqual(f, {}, h.name);
    }
  }
});

test("the NoCloud ISO carries the three files under the cidata label, and the seed directory gets them back unchanged", { skip: haveXorriso ? false : "xorriso is not installed" }, (t) => {
  const dir = tempDir(t);
  const f = firstBootOf(artifacts, "loadbalancer1").cloudInit!;
  const iso = join(dir, "cidata.iso");
  buildNoCloudIso(f, iso);
  assert.equal(isoVolumeId(iso), "cidata");
  assert.equal(statSync(iso).mode & 0o777, 0o600, "the ISO holds first-boot config: 0600");
  const root = join(dir, "root");
  mkdirSync(root);
  seedFromIso(iso, root);
  const seed = join(root, NOCLOUD_SEED.slice(1));
  assert.equal(readFileSync(join(seed, "user-data"), "utf8"), f.userData);
  assert.equal(readFileSync(join(seed, "network-config"), "utf8"), f.networkConfig);
  assert.equal(readFileSync(join(seed, "meta-data"), "utf8"), "");
  assert.equal(statSync(seed).mode & 0o777, 0o700);
});

test("the real Ignition provisions a root from master1's rendered config: its files, units and the result file", { skip: existsSync(IGNITION_BIN) && process.getuid?.() === 0 ? false : "needs root and Debian's ignition package" }, (t) => {
  const dir = tempDir(t);
  const root = join(dir, "root");
  mkdirSync(join(root, "etc"), { recursive: true });
  // a root with users and groups, as the lab's Debian root has them (Ignition adds core with useradd --root)
  for (const f of ["passwd", "group", "shadow", "gshadow"]) copyFileSync(`/etc/${f}`, join(root, "etc", f));
  const config = firstBootOf(artifacts, "master1").ignition!;
  const run = runIgnition(config, root, dir);
  const result = JSON.parse(readFileSync(join(root, IGNITION_RESULT.slice(1)), "utf8")) as { userConfigProvided?: boolean };
  assert.equal(result.userConfigProvided, true);
  // every file and unit of the config, with its content, where Ignition puts them
  const cfg = JSON.parse(config) as { storage: { files: Array<{ path: string; mode: number; contents: { source: string } }> }; systemd: { units: Array<{ name: string; contents?: string; enabled?: boolean }> } };
  for (const f of cfg.storage.files) {
    const want = Buffer.from(f.contents.source.split(",")[1]!, "base64").toString();
    assert.equal(readFileSync(join(root, f.path), "utf8"), want, f.path);
    assert.equal(statSync(join(root, f.path)).mode & 0o777, f.mode, `${f.path} mode`);
  }
  for (const u of cfg.systemd.units.filter((x) => x.contents)) assert.equal(readFileSync(join(root, "etc/systemd/system", u.name), "utf8"), u.contents, u.name);
  const preset = readFileSync(join(root, "etc/systemd/system-preset/20-ignition.preset"), "utf8");
  for (const u of cfg.systemd.units.filter((x) => x.enabled)) assert.match(preset, new RegExp(`^enable ${u.name.replace(/[.\\]/g, "\\$&")}$`, "m"));
  assert.ok(existsSync(join(root, "home/core/.ssh/authorized_keys.d/ignition")), "core's keys");
  // its presets, applied as the first boot's preset-all would: what the config enables is
  // enabled in the root (systemctl's own links), what isn't installed there is left out
  const enabled = applyIgnitionPresets(root);
  const want = cfg.systemd.units.filter((x) => x.enabled && x.contents).map((x) => x.name);
  assert.ok(want.length > 0 && want.every((u) => enabled.includes(u)), enabled.join(" "));
  for (const u of want) {
    const r = spawnSync("systemctl", [`--root=${root}`, "is-enabled", u], { encoding: "utf8" });
    assert.equal(r.stdout.trim(), "enabled", `${u}: ${r.stdout}${r.stderr}`);
  }
  assert.ok(!enabled.includes("iscsid.service"), "a unit the root doesn't have is not preset (preset-all never sees it)");
  // the relabel request was recorded, and the SELinux stand-in is gone again
  assert.ok(run.relabelled.length > 0 && run.relabelled.every((p) => p.startsWith("/")), run.relabelled.join(" "));
  assert.equal(existsSync(join(root, "etc/selinux")), false);
});

test("a config the real Ignition refuses fails the lab's first boot with its words", { skip: existsSync(IGNITION_BIN) && process.getuid?.() === 0 ? false : "needs root and Debian's ignition package" }, (t) => {
  const dir = tempDir(t);
  const root = join(dir, "root");
  mkdirSync(join(root, "etc"), { recursive: true });
  const config = JSON.parse(firstBootOf(artifacts, "master1").ignition!) as { ignition: { version: string } };
  config.ignition.version = "3.4.0"; // Ignition 2.14 has no 3.4.0
  assert.throws(() => runIgnition(JSON.stringify(config), root, dir), (e: unknown) => e instanceof FmcError && e.code === "LAB_FIRSTBOOT" && /fetch stage failed.*(unsupported|version)/i.test(e.message));
});

test("a lab VM's shape comes from the rendered Terraform: vCPUs, memory, root and data disks in attachment order, scaled to the lab", () => {
  const shapes = vmShapes(artifacts);
  // every host the libvirt module creates, and no other
  assert.deepEqual([...shapes.keys()].sort(), ctx.spec.hosts.filter((h) => h.vm).map((h) => h.name).sort());
  for (const h of ctx.spec.hosts.filter((x) => x.vm)) {
    const s = shapes.get(h.name)!;
    const { nicMacs, ...rest } = s;
    assert.deepEqual(rest, { vcpu: h.vm!.vcpu, memoryMiB: h.vm!.memoryMiB, rootGiB: h.vm!.diskGiB, dataDisks: h.vm!.dataDisks.map((d) => ({ name: d.name, sizeGiB: d.sizeGiB })) }, h.name);
    // only the firewall's NICs have fixed MACs: one per LAN segment and the WAN, as its cloud-init network-config matches them
    if (h.name === "firewall1") {
      const netcfg = firstBootOf(artifacts, h.name).cloudInit!.networkConfig;
      assert.equal(nicMacs.length, ctx.topo.lanSegments.length + 1);
      for (const m of nicMacs) assert.ok(m && netcfg.includes(`macaddress: ${m}`) || netcfg.includes(`macaddress: "${m}"`), `${m} in firewall1's network-config`);
    } else assert.ok(nicMacs.every((m) => m === undefined), h.name);
  }
  const storage = labVmShape(shapes.get("storage1")!);
  assert.equal(storage.memoryMiB, Math.min(4096, LAB_VM_LIMITS.memoryMiB));
  assert.equal(storage.scaled, true);
  assert.deepEqual(storage.dataDisks, [{ name: "data", sizeGiB: 80 }]);
  // a file that doesn't say what a domain needs is refused, not guessed
  const broken = artifacts.map((a) => (a.path === TERRAFORM_LIBVIRT_MAIN ? { ...a, content: a.content.replace(/"volume_id": "\$\{libvirt_volume\.storage1_data\.id\}"/, '"volume_id": "${libvirt_volume.nowhere.id}"') } : a));
  assert.throws(() => vmShapes(broken), /libvirt_domain\.storage1: disk \$\{libvirt_volume\.nowhere\.id\} names no volume/);
});
