// The Terraform root modules as rendered: the CPU mode of every VM, each OS's own NTP
// pool, one module per provider, a state location per module in every backend, and
// OpenTofu's encryption block. Attribute names are checked against what OpenTofu's and
// libvirt's sources define (test/fixtures/terraform-backends-opentofu.json,
// libvirt-cpu-modes.json), references against the blocks they name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, parseDocument } from "yaml";
import { renderAll } from "../../src/render/index.js";
import { loadSpec } from "../../src/model/load.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { CPU_MODES } from "../../src/model/schema.js";
import { contextFor, ROOT } from "../helpers.js";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed Terraform JSON

const fixture = (name: string) => JSON.parse(readFileSync(join(ROOT, "test", "fixtures", name), "utf8"));
const backends = fixture("terraform-backends-opentofu.json") as { backends: Record<string, string[]>; encryption: Record<string, string[]>; secret_attributes: Record<string, string[]> };

/** The seed with some values replaced (paths as in the YAML). */
function seedWith(...changes: Array<[Array<string | number>, unknown]>): string {
  const doc = parseDocument(SEED_YAML);
  for (const [path, value] of changes) doc.setIn(path, value);
  return doc.toString();
}

function renderedFiles(yaml: string): (path: string) => string {
  const artifacts = renderAll(contextFor(yaml));
  return (path) => {
    const a = artifacts.find((x) => x.path === path);
    assert.ok(a, `${path} was not rendered`);
    return a.content;
  };
}
const modules = (yaml: string) => {
  const file = renderedFiles(yaml);
  return { libvirt: JSON.parse(file("terraform/libvirt/main.tf.json")) as Json, cloudflare: JSON.parse(file("terraform/cloudflare/main.tf.json")) as Json, file };
};

test("every VM gets the spec's CPU mode; none leaves the cpu block out; modes libvirt can't take without a model are refused", () => {
  const known = fixture("libvirt-cpu-modes.json") as { modes: string[]; needsModel: string[] };
  for (const mode of CPU_MODES.filter((m) => m !== "none")) {
    assert.ok(known.modes.includes(mode) && !known.needsModel.includes(mode), `${mode} is a libvirt mode that needs no model`);
    const { libvirt } = modules(seedWith([["provisioning", "cpuMode"], mode]));
    const domains = Object.values(libvirt.resource.libvirt_domain as Json);
    assert.equal(domains.length, 14);
    for (const d of domains) assert.deepEqual(d.cpu, { mode });
  }
  const none = modules(seedWith([["provisioning", "cpuMode"], "none"])).libvirt;
  for (const d of Object.values(none.resource.libvirt_domain as Json)) assert.equal(d.cpu, undefined);
  const custom = loadSpec(seedWith([["provisioning", "cpuMode"], "custom"])).problems.filter((p) => p.severity === "error");
  assert.deepEqual(custom.map((p) => p.path), ["provisioning.cpuMode"]);
  assert.match(custom[0]!.hint ?? custom[0]!.message, /host-passthrough/);
});

test("the VMs and the DNS are separate root modules: neither names the other's provider or resources", () => {
  const { libvirt, cloudflare } = modules(SEED_YAML);
  assert.deepEqual(Object.keys(libvirt.terraform.required_providers), ["libvirt"]);
  assert.deepEqual(Object.keys(libvirt.provider), ["libvirt"]);
  assert.ok(Object.keys(libvirt.resource).every((t) => t.startsWith("libvirt_")));
  assert.ok(!JSON.stringify(libvirt).includes("cloudflare"));
  assert.deepEqual(Object.keys(cloudflare.terraform.required_providers), ["cloudflare"]);
  assert.ok(Object.keys(cloudflare.resource).every((t) => t.startsWith("cloudflare_")));
  assert.ok(!JSON.stringify(cloudflare).includes("libvirt"));
  // no DNSSEC: neither the resource nor the outputs that read it
  const off = modules(seedWith([["cloudflare", "dnssec"], false])).cloudflare;
  assert.equal(off.resource.cloudflare_zone_dnssec, undefined);
  assert.equal(off.output, undefined);
});

test("NTP: AlmaLinux and Debian VMs use their OS's own pool, Flatcar its own; a list the spec sets goes everywhere", () => {
  const { file } = modules(SEED_YAML);
  const ntpOf = (host: string) => (parseYaml(file(`terraform/libvirt/cloudinit/${host}.user-data.yaml`).replace(/^#cloud-config\n/, "")) as Json).ntp;
  for (const h of ["freeipa1", "postgresql1", "loadbalancer1", "traefik2"]) assert.deepEqual(ntpOf(h), { enabled: true, pools: ["2.almalinux.pool.ntp.org"] }, h);
  assert.deepEqual(ntpOf("firewall1"), { enabled: true, pools: ["2.debian.pool.ntp.org"] });
  const ign = JSON.parse(file("ignition/master1.ign")) as Json;
  const timesyncd = (ign.storage.files as Json[]).find((f) => f.path === "/etc/systemd/timesyncd.conf.d/fmc.conf")!;
  const source = timesyncd.contents.source as string;
  const text = source.includes(";base64,") ? Buffer.from(source.split(";base64,")[1]!, "base64").toString("utf8") : decodeURIComponent(source.replace(/^data:[^,]*,/, ""));
  assert.match(text, /NTP=0\.flatcar\.pool\.ntp\.org 1\.flatcar\.pool\.ntp\.org/);
  // the operator's own servers: on every host, as servers, no pool of fmc's choosing
  const own = renderedFiles(seedWith([["network", "ntp"], ["ntp1.example.net", "10.17.0.2"]]));
  for (const h of ["freeipa1", "firewall1"]) {
    const ntp = (parseYaml(own(`terraform/libvirt/cloudinit/${h}.user-data.yaml`).replace(/^#cloud-config\n/, "")) as Json).ntp;
    assert.deepEqual(ntp, { enabled: true, servers: ["ntp1.example.net", "10.17.0.2"] }, h);
  }
});

test("backends: one state location per module, only attributes the backend has, credentials never", () => {
  const cases: Array<[string, Record<string, unknown>, (m: string, b: Json) => void]> = [
    ["local", { dir: "/srv/fmc-state" }, (m, b) => assert.equal(b.path, `/srv/fmc-state/flatcarmicrocloud-${m}.tfstate`)],
    [
      "s3",
      { bucket: "fmc-state", region: "eu-central-1" },
      (m, b) => assert.deepEqual(b, { bucket: "fmc-state", key: `fmc/flatcarmicrocloud/${m}.tfstate`, region: "eu-central-1", encrypt: true, use_lockfile: true }),
    ],
    [
      "s3",
      { bucket: "fmc-state", endpoint: "https://minio.lan:9000", keyPrefix: "clusters" },
      (m, b) => {
        assert.equal(b.key, `clusters/flatcarmicrocloud/${m}.tfstate`);
        assert.deepEqual(b.endpoints, { s3: "https://minio.lan:9000" });
        assert.equal(b.use_path_style, true);
        assert.equal(b.skip_requesting_account_id, true);
        assert.equal(b.region, "us-east-1");
        assert.equal(b.encrypt, false, "an S3-compatible store may have no server-side encryption");
      },
    ],
    [
      "http",
      { address: "https://gitlab.example.com/api/v4/projects/42/terraform/state", lockMethod: "POST", unlockMethod: "DELETE" },
      (m, b) => {
        const url = `https://gitlab.example.com/api/v4/projects/42/terraform/state/flatcarmicrocloud-${m}`;
        assert.deepEqual(b, { address: url, lock_address: url, unlock_address: url, lock_method: "POST", unlock_method: "DELETE" });
      },
    ],
    ["pg", { connStr: "postgres://db.lan/terraform?sslmode=require" }, (m, b) => assert.deepEqual(b, { conn_str: "postgres://db.lan/terraform?sslmode=require", schema_name: `fmc_flatcarmicrocloud_${m}` })],
    ["pg", {}, (m, b) => assert.deepEqual(b, { schema_name: `fmc_flatcarmicrocloud_${m}` }, "the connection string from PG_CONN_STR")],
  ];
  for (const [type, config, expect] of cases) {
    const rendered = modules(seedWith([["provisioning", "backend"], { [type]: config }]));
    const locations = new Set<string>();
    for (const m of ["libvirt", "cloudflare"] as const) {
      const backend = rendered[m].terraform.backend as Json;
      assert.deepEqual(Object.keys(backend), [type]);
      const body = backend[type] as Json;
      const known = backends.backends[type]!;
      const walk = (o: Json, prefix = "") => {
        for (const [k, v] of Object.entries(o)) {
          assert.ok(known.includes(prefix + k), `${type}: ${prefix + k} is not an attribute of the ${type} backend`);
          if (v && typeof v === "object") walk(v as Json, `${prefix}${k}.`);
        }
      };
      walk(body);
      for (const secret of backends.secret_attributes[type] ?? []) assert.equal(body[secret], undefined, `${type}: ${secret} comes from the environment`);
      expect(m, body);
      locations.add(JSON.stringify(body));
    }
    assert.equal(locations.size, 2, `${type}: each module has its own state`);
  }
  // no backend: Terraform's default, terraform.tfstate in the module's directory
  assert.equal(modules(SEED_YAML).libvirt.terraform.backend, undefined);
});

test("backend settings that would put a credential in the spec, or two backends at once, are refused", () => {
  const errors = (backend: unknown) => loadSpec(seedWith([["provisioning", "backend"], backend])).problems.filter((p) => p.severity === "error");
  assert.match(errors({ pg: { connStr: "postgres://admin:hunter2@db.lan/terraform" } })[0]!.message, /without user or password/);
  assert.match(errors({ pg: { connStr: "postgres://db.lan/terraform?password=hunter2" } })[0]!.message, /PGUSER and PGPASSWORD/);
  assert.match(errors({ http: { address: "https://user:pw@gitlab.example.com/state" } })[0]!.message, /no credentials/);
  assert.match(errors({ local: { dir: "/srv/a" }, s3: { bucket: "fmc-state" } })[0]!.message, /at most one of local, s3, http, pg/);
  assert.deepEqual(errors({ s3: { bucket: "fmc-state", access_key: "AKIA" } }).map((p) => p.path), ["provisioning.backend.s3.access_key"], "no key for credentials");
});

test("OpenTofu state encryption: references resolve, attributes exist, enforced unless reading the old plain state", () => {
  for (const fromUnencrypted of [false, true]) {
    const rendered = modules(seedWith([["provisioning", "stateEncryption"], { fromUnencrypted }]));
    for (const m of ["libvirt", "cloudflare"] as const) {
      const tf = rendered[m];
      const enc = tf.terraform.encryption as Json;
      assert.equal(tf.terraform.required_version, ">= 1.8.0", "variables in the encryption block need OpenTofu 1.8");
      for (const block of Object.keys(enc)) assert.ok(backends.encryption.blocks!.includes(block), block);
      // key providers and methods: known types, known attributes
      for (const [type, byName] of Object.entries(enc.key_provider as Json)) {
        for (const body of Object.values(byName as Json)) for (const k of Object.keys(body as Json)) assert.ok(backends.encryption[`key_provider.${type}`]!.includes(k), `${type}.${k}`);
      }
      for (const [type, byName] of Object.entries(enc.method as Json)) {
        for (const body of Object.values(byName as Json)) for (const k of Object.keys(body as Json)) assert.ok(backends.encryption[`method.${type}`]!.includes(k), `${type}.${k}`);
      }
      // the passphrase comes from a declared, sensitive variable; the key from a declared provider
      assert.equal(enc.key_provider.pbkdf2.fmc.passphrase, "${var.fmc_state_passphrase}");
      assert.equal(tf.variable.fmc_state_passphrase.sensitive, true);
      assert.equal(enc.method.aes_gcm.fmc.keys, "${key_provider.pbkdf2.fmc}");
      for (const target of ["state", "plan"]) {
        const t = enc[target] as Json;
        for (const k of Object.keys(t)) assert.ok(backends.encryption.target!.includes(k), `${target}.${k}`);
        const methods = [t.method, t.fallback?.method].filter(Boolean) as string[];
        for (const ref of methods) {
          const [root, type, name] = ref.split(".");
          assert.equal(root, "method");
          assert.ok(enc.method[type!]?.[name!], `${ref} is declared`);
        }
        if (fromUnencrypted) {
          assert.deepEqual(t.fallback, { method: "method.unencrypted.migrate" });
          assert.equal(t.enforced, undefined, "OpenTofu refuses an unencrypted fallback under enforced");
        } else {
          assert.equal(t.enforced, true);
          assert.equal(t.fallback, undefined);
          assert.equal(enc.method.unencrypted, undefined);
        }
      }
    }
  }
  assert.equal(modules(SEED_YAML).libvirt.terraform.encryption, undefined);
});

test("Ignition and cloud-init changes replace no VM: ignore_changes on the configs and on the domains that reference them", () => {
  const schema = fixture("terraform-libvirt-0.8.3.json") as { resources: Record<string, { attributes: string[] }> };
  for (const yaml of [SEED_YAML, ...readdirSync(join(ROOT, "examples")).map((e) => readFileSync(join(ROOT, "examples", e, "cluster.yaml"), "utf8"))]) {
    const libvirt = JSON.parse(renderedFiles(yaml)("terraform/libvirt/main.tf.json")) as Json;
    const res = libvirt.resource as Json;
    const firstBoot = /\$\{file\("\$\{path\.module\}\/(\.\.\/\.\.\/ignition|cloudinit)\//;
    let seen = 0;
    for (const type of ["libvirt_ignition", "libvirt_cloudinit_disk"]) {
      for (const [name, body] of Object.entries((res[type] ?? {}) as Json)) {
        // every attribute that reads a first-boot file is ignored after creation (JSON syntax: bare attribute names)
        const reads = Object.entries(body as Json).filter(([, v]) => typeof v === "string" && firstBoot.test(v)).map(([k]) => k);
        assert.ok(reads.length > 0, `${type}.${name} reads its config from a file`);
        assert.deepEqual([...(body as Json).lifecycle.ignore_changes].sort(), reads.sort(), `${type}.${name}`);
        for (const a of reads) assert.ok(schema.resources[type]!.attributes.includes(a));
        seen++;
      }
    }
    assert.ok(seen > 0);
    for (const [name, d] of Object.entries(res.libvirt_domain as Json)) {
      const refs = ["coreos_ignition", "cloudinit"].filter((a) => (d as Json)[a] !== undefined);
      assert.equal(refs.length, 1, `${name} boots from Ignition or cloud-init`);
      assert.deepEqual((d as Json).lifecycle, { ignore_changes: refs }, `libvirt_domain.${name}`);
    }
  }
});
