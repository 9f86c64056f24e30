// fmc render never destroys what it did not write: Terraform's working files survive,
// user files are left alone (or block the render where fmc would overwrite them), no
// write leaves the output directory, and files fmc no longer renders are removed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fmc, tempDir } from "../helpers.js";
import { writeArtifacts } from "../../src/render/write.js";

const seedWithout = (dir: string, host: string) => {
  const spec = join(dir, "cluster.yaml");
  const text = readFileSync(spec, "utf8");
  writeFileSync(spec, text.split("\n").filter((l) => !l.includes(`name: ${host},`)).join("\n"));
};

test("Terraform's state and working directory survive every render, in each module's directory", (t) => {
  const dir = tempDir(t);
  assert.equal(fmc(["init"], dir).status, 0);
  assert.equal(fmc(["render", "-o", "out"], dir).status, 0);
  const tf = join(dir, "out/terraform");
  const keep: Record<string, string> = {
    "libvirt/terraform.tfstate": '{"version":4,"serial":7}\n',
    "libvirt/terraform.tfstate.backup": '{"version":4,"serial":6}\n',
    "libvirt/.terraform.lock.hcl": "# lock\n",
    "libvirt/prod.auto.tfvars": 'libvirt_uri = "qemu:///system"\n',
    "libvirt/.terraform/providers/registry.terraform.io/dmacvicar/libvirt/0.8.3/linux_amd64/terraform-provider-libvirt": "binary",
    "cloudflare/terraform.tfstate": '{"version":4,"serial":3}\n',
    "cloudflare/terraform.tfvars": 'cloudflare_zone_id = "abc"\n',
    "cloudflare/.terraform.tfstate.lock.info": "{}\n",
    // the single root module of earlier renders kept its state in terraform/ itself
    "terraform.tfstate": '{"version":4,"serial":2}\n',
  };
  for (const [rel, content] of Object.entries(keep)) {
    mkdirSync(join(tf, rel, ".."), { recursive: true });
    writeFileSync(join(tf, rel), content);
  }
  // a spec change that removes rendered files, including Terraform ones (traefik2's cloud-init)
  seedWithout(dir, "traefik2");
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 0, r.stderr);
  for (const [rel, content] of Object.entries(keep)) assert.equal(readFileSync(join(tf, rel), "utf8"), content, `${rel} survived`);
  assert.match(r.stdout, /removed \d+ files fmc wrote before and no longer renders: .*terraform\/libvirt\/cloudinit\/traefik2\.user-data\.yaml/);
  assert.equal(existsSync(join(tf, "libvirt/cloudinit/traefik2.user-data.yaml")), false);
  assert.equal(existsSync(join(tf, "libvirt/cloudinit/traefik1.user-data.yaml")), true, "the others stay");
  assert.equal(existsSync(join(dir, "out/traefik/traefik2")), false, "emptied directories go too");
  assert.match(r.stdout, /left alone \d+ files fmc did not write: .*terraform\/libvirt\/terraform\.tfstate/);
  // the Cloudflare section goes: its module's files go, its state stays (and with it the directory)
  const spec = join(dir, "cluster.yaml");
  const text = readFileSync(spec, "utf8");
  writeFileSync(spec, text.slice(0, text.indexOf("cloudflare:\n")) + text.slice(text.indexOf("# In-cluster services")));
  const r2 = fmc(["render", "-o", "out"], dir);
  assert.equal(r2.status, 0, r2.stderr);
  assert.match(r2.stdout, /removed \d+ files? fmc wrote before and no longer renders: .*terraform\/cloudflare\/main\.tf\.json/);
  for (const [rel, content] of Object.entries(keep)) assert.equal(readFileSync(join(tf, rel), "utf8"), content, `${rel} survived the module's removal`);
  // out/.gitignore keeps the state and tfvars of every module out of git
  const ignore = readFileSync(join(dir, "out/.gitignore"), "utf8");
  for (const line of ["/terraform/**/terraform.tfstate*", "/terraform/**/.terraform/", "/terraform/**/*.tfvars"]) assert.ok(ignore.split("\n").includes(line), line);
  // a first render into a directory holding only Terraform's files (a module's state kept from before) is fine
  const fresh = join(dir, "fresh/terraform");
  mkdirSync(join(fresh, "libvirt/.terraform"), { recursive: true });
  writeFileSync(join(fresh, "libvirt/terraform.tfstate"), "{}\n");
  writeFileSync(join(fresh, "terraform.tfstate"), "{}\n");
  assert.equal(fmc(["render", "-o", "fresh"], dir).status, 0);
  assert.equal(readFileSync(join(fresh, "libvirt/terraform.tfstate"), "utf8"), "{}\n");
  assert.equal(readFileSync(join(fresh, "terraform.tfstate"), "utf8"), "{}\n");
  assert.ok(existsSync(join(fresh, "libvirt/main.tf.json")));
  // but a module directory holding anything else is not Terraform's alone
  const other = join(dir, "other/terraform/libvirt");
  mkdirSync(other, { recursive: true });
  writeFileSync(join(other, "notes.txt"), "mine\n");
  const refused = fmc(["render", "-o", "other"], dir);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /not empty and fmc has not written there before: terraform\/libvirt\/notes\.txt/);
});

test("files a user added are left alone; a file fmc would overwrite stops the render", (t) => {
  const dir = tempDir(t);
  assert.equal(fmc(["render", "-o", "out"], dir).status, 0);
  writeFileSync(join(dir, "out/NOTES.md"), "mine\n");
  writeFileSync(join(dir, "out/k3s/master1/extra.yaml"), "mine too\n");
  const again = fmc(["render", "-o", "out"], dir);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(readFileSync(join(dir, "out/NOTES.md"), "utf8"), "mine\n");
  assert.equal(readFileSync(join(dir, "out/k3s/master1/extra.yaml"), "utf8"), "mine too\n");
  // the manifest is lost (say, copied without dotfiles): fmc owns nothing there any more
  const copy = join(dir, "copy");
  mkdirSync(join(copy, "haproxy/loadbalancer1"), { recursive: true });
  writeFileSync(join(copy, "haproxy/loadbalancer1/haproxy.cfg"), "# hand-tuned\n");
  const r = fmc(["render", "-o", "copy"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[OUT_NOT_EMPTY\] copy is not empty and fmc has not written there before: haproxy\n/);
  assert.equal(readFileSync(join(copy, "haproxy/loadbalancer1/haproxy.cfg"), "utf8"), "# hand-tuned\n");
  // with a manifest that does not list it, a file in fmc's way is named and kept
  writeFileSync(join(copy, ".fmc-render"), JSON.stringify({ files: [] }));
  const blocked = fmc(["render", "-o", "copy"], dir);
  assert.equal(blocked.status, 1);
  assert.match(blocked.stderr, /error\[OUT_NOT_OURS\] copy holds files fmc did not write where it needs to write: haproxy\/loadbalancer1\/haproxy\.cfg/);
  assert.deepEqual(readdirSync(copy).sort(), [".fmc-render", "haproxy"], "nothing was written");
});

test("a symlinked output directory stays a link; a symlink inside it is never followed", (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, "real"));
  symlinkSync("real", join(dir, "out"));
  assert.equal(fmc(["render", "-o", "out"], dir).status, 0);
  assert.ok(lstatSync(join(dir, "out")).isSymbolicLink());
  assert.ok(existsSync(join(dir, "real/k3s/master1/config.yaml")));
  // out/k3s replaced by a link to a directory elsewhere: fmc must not write through it
  const elsewhere = join(dir, "elsewhere");
  mkdirSync(elsewhere);
  const k3s = join(dir, "real/k3s");
  rmSync(k3s, { recursive: true });
  symlinkSync(elsewhere, k3s);
  const r = fmc(["render", "-o", "out"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[OUT_(SYMLINK|NOT_OURS)\]/);
  assert.deepEqual(readdirSync(elsewhere), [], "nothing was written outside the output directory");
  assert.equal(realpathSync(join(dir, "out")), join(realpathSync(dir), "real"));
});

test("the writer refuses artifact paths that leave the output directory", (t) => {
  const dir = tempDir(t);
  for (const path of ["../x.conf", "a/../../x", "/etc/cron.d/x", "a//b", "", "a/./b"]) {
    assert.throws(() => writeArtifacts(join(dir, "out"), [{ path, content: "secret" }]), /RENDER_PATH|refusing to write/, path);
  }
  assert.deepEqual(readdirSync(dir), [], "nothing was created");
  assert.equal(existsSync(join(dir, "x.conf")), false);
});

test("removing files fmc no longer renders never follows a symlink or touches Terraform's files", (t) => {
  const dir = tempDir(t);
  assert.equal(fmc(["init"], dir).status, 0);
  assert.equal(fmc(["render", "-o", "o1"], dir).status, 0);
  // o1/wireguard/vps1 replaced by a link to a directory outside -o holding files of the same names
  const elsewhere = join(dir, "elsewhere/vps1");
  mkdirSync(elsewhere, { recursive: true });
  for (const f of ["wg0.conf", "nftables.nft", "sysctl.conf"]) writeFileSync(join(elsewhere, f), "not fmc's\n");
  rmSync(join(dir, "o1/wireguard/vps1"), { recursive: true });
  symlinkSync(elsewhere, join(dir, "o1/wireguard/vps1"));
  // a manifest that claims Terraform's state (edited by hand, or by an older fmc)
  writeFileSync(join(dir, "o1/terraform/terraform.tfstate"), '{"version":4}\n');
  const manifest = JSON.parse(readFileSync(join(dir, "o1/.fmc-render"), "utf8")) as { files: string[] };
  writeFileSync(join(dir, "o1/.fmc-render"), JSON.stringify({ files: [...manifest.files, "terraform/terraform.tfstate"] }));
  // the WireGuard section goes: fmc no longer renders wireguard/vps1/*
  seedWithout(dir, "vps1");
  const spec = join(dir, "cluster.yaml");
  const cut = (text: string, from: string, to: string) => text.slice(0, text.indexOf(from)) + text.slice(text.indexOf(to));
  writeFileSync(spec, cut(cut(readFileSync(spec, "utf8"), "wireguard:\n", "firewall:\n"), "cloudflare:\n", "# In-cluster services"));
  const r = fmc(["render", "-o", "o1"], dir);
  assert.equal(r.status, 0, r.stderr);
  for (const f of ["wg0.conf", "nftables.nft", "sysctl.conf"]) assert.equal(readFileSync(join(elsewhere, f), "utf8"), "not fmc's\n", `${f} outside -o survived`);
  assert.equal(readFileSync(join(dir, "o1/terraform/terraform.tfstate"), "utf8"), '{"version":4}\n');
});

test("a directory fmc never wrote to is refused without touching it, and without walking it", (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, "fd/deep/er"), { recursive: true });
  writeFileSync(join(dir, "fd/.notes.fmc-tmp-1"), "mine");
  const r = fmc(["render", "-o", "fd"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error\[OUT_NOT_EMPTY\] fd is not empty and fmc has not written there before: /);
  assert.equal(readFileSync(join(dir, "fd/.notes.fmc-tmp-1"), "utf8"), "mine", "a look-alike temp file in someone else's directory stays");
});
