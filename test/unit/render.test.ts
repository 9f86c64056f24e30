import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import ajvDraft04 from "ajv-draft-04";
import * as k8s from "kubernetes-models";
import { renderAll } from "../../src/render/index.js";
import { ignitionConfig } from "../../src/render/ignition.js";
import { wireguardPublicKey } from "../../src/state/secrets.js";
import { spawnSync } from "node:child_process";
import { SEED_YAML } from "../../src/model/seed.js";
import { K3S_AGENT_FLAGS, K3S_DISABLE_ITEMS, K3S_SERVER_FLAGS } from "../../src/model/k3s-flags.js";
import { Topology } from "../../src/model/topology.js";
import { exportsFile, lvmPlan, volumeMountUnits } from "../../src/render/storage.js";
import { firewallNftables, pfsenseFragment } from "../../src/render/firewall.js";
import { renderWireguard, tunnelOf, wgConfig } from "../../src/render/wireguard.js";
import { keepalivedConfig } from "../../src/render/keepalived.js";
import { ipaServerInstall } from "../../src/render/dns.js";
import { contextFor, ROOT } from "../helpers.js";

const fixture = (name: string) => JSON.parse(readFileSync(join(ROOT, "test", "fixtures", name), "utf8"));
const ctx = contextFor();
const artifacts = renderAll(ctx);
const file = (path: string) => {
  const a = artifacts.find((x) => x.path === path);
  assert.ok(a, `${path} was not rendered; have ${artifacts.map((x) => x.path).join(", ")}`);
  return a.content;
};

test("rendering is deterministic: same spec and secrets, same bytes", () => {
  const again = renderAll(contextFor());
  assert.deepEqual(again.map((a) => [a.path, a.content]), artifacts.map((a) => [a.path, a.content]));
  const other = renderAll(contextFor(undefined, "other-secrets"));
  assert.notEqual(other.find((a) => a.path === "k3s/master1/config.yaml")!.content, file("k3s/master1/config.yaml"));
});

test("the full seed artifact set is rendered", () => {
  for (const p of [
    "terraform/libvirt/main.tf.json",
    "terraform/cloudflare/main.tf.json",
    "ignition/master1.ign",
    "ignition/storage1.ign",
    "k3s/worker3/config.yaml",
    "haproxy/loadbalancer2/haproxy.cfg",
    "keepalived/loadbalancer1/keepalived.conf",
    "keepalived/traefik2/keepalived.conf",
    "traefik/traefik1/traefik.yml",
    "traefik/traefik1/dynamic/fmc.yml",
    "wireguard/vps1/wg0.conf",
    "wireguard/firewall1/wg0.conf",
    "wireguard/vps1/nftables.nft",
    "firewall/nftables.nft",
    "firewall/pfsense.xml",
    "storage/storage1/lvm-plan.sh",
    "storage/storage1/exports",
    "database/postgresql1/var-lib-pgsql.mount",
    "database/postgresql1/postgresql-16.service.d/fmc.conf",
    "dns/microcloud.lan.zone",
    "dns/17.10.in-addr.arpa.zone",
    "identity/freeipa1-server-install.sh",
    "identity/postgresql1-client-install.sh",
    "kubernetes/10-storageclass-nfs-shared.yaml",
    "kubernetes/50-helmchart-longhorn.yaml",
    "monitoring/prometheus.yml",
    "topology.svg",
  ]) file(p);
});

test("K3s: first server initialises the cluster, every other node joins through the VIP", () => {
  const flags = { server: K3S_SERVER_FLAGS, agent: K3S_AGENT_FLAGS };
  const m1 = parseYaml(file("k3s/master1/config.yaml"));
  const m2 = parseYaml(file("k3s/master2/config.yaml"));
  const w1 = parseYaml(file("k3s/worker1/config.yaml"));
  const st = parseYaml(file("k3s/storage1/config.yaml"));
  assert.equal(m1["cluster-init"], true);
  assert.equal(m1.server, undefined);
  assert.equal(m2.server, "https://10.17.5.10:6443");
  assert.equal(w1.server, "https://10.17.5.10:6443");
  assert.ok(m1["tls-san"].includes("10.17.5.10"));
  // K3s's packaged Traefik stays: it is the in-cluster ingress (services.ingress)
  assert.deepEqual(m1.disable, ["servicelb", "local-storage"]);
  assert.equal(m1.token, ctx.secrets.get("k3s-token"));
  assert.equal(w1["node-ip"], "10.17.4.24");
  assert.ok(st["node-taint"].includes("node-role.fmc.dev/storage=true:NoSchedule"));
  for (const [cfg, kind] of [[m1, "server"], [m2, "server"], [w1, "agent"], [st, "agent"]] as const) {
    for (const key of Object.keys(cfg)) assert.ok(flags[kind].has(key), `${key} is not a k3s ${kind} flag`);
  }
  for (const item of m1.disable) assert.ok((K3S_DISABLE_ITEMS as readonly string[]).includes(item));
});

test("HAProxy: 6443 to servers, ingress to agents but never the storage node", () => {
  const cfg = file("haproxy/loadbalancer1/haproxy.cfg");
  const servers = (backend: string) =>
    cfg.split(new RegExp(`^backend ${backend}\n`, "m"))[1]!.split("\n\n")[0]!.split("\n").filter((l) => l.trim().startsWith("server ")).map((l) => l.trim().split(" ")[2]);
  assert.deepEqual(servers("k8s-api"), ["10.17.4.21:6443", "10.17.4.22:6443", "10.17.4.23:6443"]);
  assert.deepEqual(servers("ingress-http"), ["10.17.4.24:30080", "10.17.4.25:30080", "10.17.4.26:30080"]);
  assert.ok(!cfg.includes("10.17.4.27"), "storage1 must not be a backend");
  assert.match(cfg, /default-server check inter 3000ms fall 3 rise 2/);
  assert.match(cfg, /bind 127\.0\.0\.1:8404\n\s+stats enable/);
});

test("Keepalived: unicast peers, priorities, tracked HAProxy, no auth (VRRPv3)", () => {
  const a = file("keepalived/loadbalancer1/keepalived.conf");
  const b = file("keepalived/loadbalancer2/keepalived.conf");
  assert.match(a, /priority 110/);
  assert.match(b, /priority 100/);
  assert.match(a, /unicast_src_ip 10\.17\.5\.11\n\s+unicast_peer \{\n\s+10\.17\.5\.12\n/);
  assert.match(a, /virtual_router_id 51/);
  assert.match(a, /10\.17\.5\.10\/24 dev eth0/);
  assert.match(a, /vrrp_script chk_haproxy/);
  // VRRPv3 (sub-second adverts) has no authentication: none is rendered
  assert.match(a, /vrrp_version 3/);
  assert.doesNotMatch(a, /auth_type|auth_pass/);
});

test("WireGuard: real X25519 key pairs that match across the tunnel", () => {
  const vps = file("wireguard/vps1/wg0.conf");
  const lan = file("wireguard/firewall1/wg0.conf");
  const field = (text: string, key: string) => text.match(new RegExp(`^${key} = (.+)$`, "m"))![1]!;
  assert.equal(field(vps, "PublicKey"), wireguardPublicKey(field(lan, "PrivateKey")));
  assert.equal(field(lan, "PublicKey"), wireguardPublicKey(field(vps, "PrivateKey")));
  assert.equal(Buffer.from(field(vps, "PublicKey"), "base64").length, 32);
  assert.equal(field(vps, "Address"), "10.17.0.1/24");
  assert.equal(field(lan, "Endpoint"), "203.0.113.10:51820");
  assert.equal(field(lan, "PersistentKeepalive"), "25");
  assert.equal(field(lan, "MTU"), "1420");
  // a known RFC 7748 vector: the private scalar 77076d0a… has public key 8520f009…
  assert.equal(
    Buffer.from(wireguardPublicKey(Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex").toString("base64")), "base64").toString("hex"),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
});

test("Ignition validates against the upstream 3.3.0 JSON Schema, the spec Flatcar stable and Ignition 2.14 accept", () => {
  // coreos/ignition config/v3_3/schema/ignition.json at tag v2.14.0 (fef845a7d5ba463b4a93a5ed03a76721164c4a84),
  // unchanged on main since 7943e529e44a42a0f9dfa8a1782ba0d5e55f8335
  // ajv-draft-04 is CommonJS: its class is the default export's default
  const Ajv = (ajvDraft04 as unknown as { default: typeof ajvDraft04 }).default ?? ajvDraft04;
  const ajv = new (Ajv as unknown as new (o: object) => import("ajv").default)({ allErrors: true, strict: false });
  const validate = ajv.compile(fixture("ignition-3.3.0.schema.json"));
  const flatcar = ctx.spec.hosts.filter((h) => h.os === "flatcar");
  assert.equal(flatcar.length, 7);
  for (const h of flatcar) {
    const ign = JSON.parse(file(`ignition/${h.name}.ign`)) as { ignition: { version: string } };
    assert.ok(validate(ign), `${h.name}: ${ajv.errorsText(validate.errors)}`);
    assert.equal(ign.ignition.version, "3.3.0");
  }
  // the schema check is not a rubber stamp: a wrong type fails it
  const broken = structuredClone(ignitionConfig(ctx, ctx.topo.host("master1"))) as { storage: { files: Array<{ mode: unknown }> } };
  broken.storage.files[0]!.mode = "0644";
  assert.equal(validate(broken), false);
});

test("Ignition content: keys, DNS first, swap off, K3s pinned, storage persisted", () => {
  const decode = (ign: { storage: { files: Array<{ path: string; contents: { source: string } }> } }, path: string) => {
    const f = ign.storage.files.find((x) => x.path === path);
    assert.ok(f, `no ${path}`);
    return Buffer.from(f.contents.source.split(",")[1]!, "base64").toString("utf8");
  };
  const m1 = JSON.parse(file("ignition/master1.ign"));
  assert.equal(m1.passwd.users[0].name, "core");
  assert.ok(m1.passwd.users[0].sshAuthorizedKeys.length >= 1);
  const network = decode(m1, "/etc/systemd/network/00-eth0.network");
  assert.match(network, /Address=10\.17\.4\.21\/24/);
  assert.equal(network.match(/^DNS=(.+)$/m)![1], "10.17.3.11", "the internal DNS comes first");
  assert.ok(!/1\.1\.1\.1|8\.8\.8\.8/.test(network), "no public resolver on nodes");
  assert.ok(m1.systemd.units.some((u: { name: string; mask?: boolean }) => u.name === "swap.target" && u.mask));
  assert.ok(m1.systemd.units.some((u: { name: string; enabled?: boolean }) => u.name === "iscsid.service" && u.enabled));
  assert.match(decode(m1, "/opt/fmc/install-k3s.sh"), /VERSION=v1\.33\.4\+k3s1[\s\S]*sha256sum --check/);
  // K3s is written, never started by Ignition: the first-boot config can't bootstrap (k3s phases do, in order)
  const firstBoot = parseYaml(decode(m1, "/etc/rancher/k3s/config.yaml"));
  assert.equal(firstBoot["cluster-init"], undefined);
  assert.equal(firstBoot.server, "https://10.17.5.10:6443");
  assert.ok(!m1.systemd.units.some((u: { name: string; enabled?: boolean }) => u.name === "k3s.service" && u.enabled));
  const st = JSON.parse(file("ignition/storage1.ign"));
  const units = st.systemd.units.map((u: { name: string }) => u.name);
  for (const u of ["fmc-lvm.service", "srv-nfs-postgresql.mount", "srv-nfs-shared.mount", "mnt-longhorn\\x2ddisk.mount", "nfs-server.service"]) {
    assert.ok(units.includes(u), `storage1 lacks ${u}`);
  }
  assert.match(decode(st, "/etc/exports"), /^\/srv\/nfs\/postgresql 10\.17\.3\.14\(rw,sync,no_subtree_check,no_root_squash\)$/m);
  assert.match(decode(st, "/opt/fmc/lvm-plan.sh"), /lvcreate --yes -n longhorn_lv -l 100%FREE/);
});

test("Terraform JSON uses only attributes the providers define", () => {
  const check = (tf: { resource: Record<string, Record<string, Record<string, unknown>>> }, schema: { resources: Record<string, { attributes: string[]; required: string[] }> }) => {
    let checked = 0;
    for (const [type, instances] of Object.entries(tf.resource)) {
      const known = schema.resources[type];
      assert.ok(known, `unknown resource type ${type}`);
      for (const [name, body] of Object.entries(instances)) {
        const walk = (obj: Record<string, unknown>, prefix: string) => {
          for (const [k, v] of Object.entries(obj)) {
            const path = prefix ? `${prefix}.${k}` : k;
            if (path === "lifecycle") {
              // Terraform's meta-argument, not the provider's: what it ignores must be the provider's attributes
              for (const a of (v as { ignore_changes?: string[] }).ignore_changes ?? []) assert.ok(known.attributes.includes(a), `${type}.${name}: lifecycle ignores ${a}, not an attribute of ${type}`);
              checked++;
              continue;
            }
            assert.ok(known.attributes.includes(path), `${type}.${name}: ${path} is not an attribute of ${type}`);
            checked++;
            const blocks = Array.isArray(v) ? v : [v];
            for (const b of blocks) if (b && typeof b === "object" && !Array.isArray(b)) walk(b as Record<string, unknown>, path);
          }
        };
        walk(body, "");
        for (const req of known.required.filter((r) => !r.includes("."))) assert.ok(req in body, `${type}.${name} lacks required ${req}`);
      }
    }
    return checked;
  };
  const main = JSON.parse(file("terraform/libvirt/main.tf.json"));
  assert.ok(check(main, fixture("terraform-libvirt-0.8.3.json")) > 100);
  assert.equal(Object.keys(main.resource.libvirt_domain).length, 14, "every host with a vm section");
  assert.equal(main.resource.libvirt_domain.worker1.disk.length, 2, "root + data disk");
  assert.equal(main.resource.libvirt_volume.storage1_data.size, 80 * 1024 ** 3);
  assert.deepEqual(Object.keys(main.resource.libvirt_network).sort(), ["cluster", "dmz", "infra", "lb"]);
  assert.equal(main.terraform.required_providers.libvirt.source, "dmacvicar/libvirt");
  const cf = JSON.parse(file("terraform/cloudflare/main.tf.json"));
  check(cf, fixture("terraform-cloudflare-5.22.0.json"));
  assert.equal(cf.resource.cloudflare_dns_record.apex.content, "203.0.113.10");
  assert.equal(cf.resource.cloudflare_dns_record.www.proxied, true);
  assert.equal(cf.resource.cloudflare_zone_setting.ssl.value, "strict");
  assert.equal(cf.resource.cloudflare_zone_dnssec.zone.status, "active");
  assert.equal(cf.variable.cloudflare_api_token.sensitive, true);
  // every VM gets a CPU mode libvirt knows and the provider can set alone (no model)
  const cpuModes = fixture("libvirt-cpu-modes.json") as { modes: string[]; needsModel: string[] };
  for (const [name, d] of Object.entries(main.resource.libvirt_domain as Record<string, { cpu?: { mode: string } }>)) {
    assert.equal(d.cpu?.mode, "host-passthrough", `${name} has the default CPU mode`);
    assert.ok(cpuModes.modes.includes(d.cpu!.mode) && !cpuModes.needsModel.includes(d.cpu!.mode), name);
  }
  // the DS record outputs read attributes cloudflare_zone_dnssec has
  const dnssecAttrs = fixture("terraform-cloudflare-5.22.0.json").resources.cloudflare_zone_dnssec.attributes as string[];
  const refs = JSON.stringify(cf.output).match(/\$\{cloudflare_zone_dnssec\.zone\.([a-z_]+)\}/g)!;
  assert.ok(refs.length >= 5);
  for (const r of refs) assert.ok(dnssecAttrs.includes(r.slice("${cloudflare_zone_dnssec.zone.".length, -1)), r);
  assert.equal(cf.output.dnssec_ds.value, "${cloudflare_zone_dnssec.zone.ds}");
  // file() paths are relative to the module's directory, terraform/libvirt/: they name rendered files
  const paths = new Set(artifacts.map((a) => a.path));
  const files = [...JSON.stringify(main).matchAll(/\$\{file\(\\"\$\{path\.module\}\/([^"\\]+)\\"\)\}/g)].map((m) => join("terraform/libvirt", m[1]!));
  assert.equal(files.length, 21, "7 Ignition configs, 7 cloud-init user data and network configs");
  for (const f of files) assert.ok(paths.has(f), `${f} is rendered`);
});

test("Kubernetes manifests: built-in objects pass kubernetes-models validation", () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML goes straight in
  const kinds: Record<string, { new (x: any): { validate(): void } }> = {
    "v1/Namespace": k8s.v1.Namespace,
    "v1/Secret": k8s.v1.Secret,
    "v1/PersistentVolumeClaim": k8s.v1.PersistentVolumeClaim,
    "storage.k8s.io/v1/StorageClass": k8s.storageK8sIo.v1.StorageClass,
    "networking.k8s.io/v1/Ingress": k8s.networkingK8sIo.v1.Ingress,
    "v1/Service": k8s.v1.Service,
  };
  // HelmChartConfig and the operators' resources are custom resources: checked against their CRDs in charts.test.ts
  const custom = new Set(["helm.cattle.io/v1/HelmChartConfig", "elasticsearch.k8s.elastic.co/v1/Elasticsearch", "kibana.k8s.elastic.co/v1/Kibana", "kafka.strimzi.io/v1/Kafka", "kafka.strimzi.io/v1/KafkaNodePool"]);
  let builtIn = 0;
  const charts: Record<string, { spec: Record<string, unknown> }> = {};
  for (const a of artifacts.filter((x) => x.path.startsWith("kubernetes/"))) {
    for (const doc of parseAllDocuments(a.content)) {
      const obj = doc.toJS();
      if (obj.kind === "HelmChart") {
        assert.equal(obj.apiVersion, "helm.cattle.io/v1");
        charts[obj.metadata.name] = obj;
        continue;
      }
      if (custom.has(`${obj.apiVersion}/${obj.kind}`)) continue;
      const Model = kinds[`${obj.apiVersion}/${obj.kind}`];
      assert.ok(Model, `unexpected kind ${obj.apiVersion}/${obj.kind} in ${a.path}`);
      new Model(obj).validate();
      builtIn++;
    }
  }
  assert.ok(builtIn >= 8);
  assert.throws(() => new k8s.v1.PersistentVolumeClaim({ metadata: { name: "x" }, spec: { accessModes: "ReadWriteOnce" } } as never).validate());
  const values = (name: string) => parseYaml(charts[name]!.spec.valuesContent as string);
  assert.equal(values("longhorn").defaultSettings.defaultDataPath, "/mnt/longhorn-disk");
  assert.equal(values("redis-ha").persistentVolume.storageClass, "longhorn-single", "Redis keeps its own copies: 1-replica Longhorn");
  assert.equal(charts["strimzi-kafka-operator"]!.spec.chart, "oci://quay.io/strimzi-helm/strimzi-kafka-operator");
  assert.equal(charts["prometheus"]!.spec.version, "27.28.0");
  const sc = parseYaml(file("kubernetes/10-storageclass-nfs-shared.yaml"));
  assert.deepEqual(sc.parameters, { server: "10.17.4.27", share: "/srv/nfs/shared" });
});

test("secrets only in files marked secret", () => {
  // Ignition embeds files as base64 data URLs: look inside them too.
  const expand = (text: string) =>
    text + [...text.matchAll(/;base64,([A-Za-z0-9+/=]+)/g)].map((m) => Buffer.from(m[1]!, "base64").toString("utf8")).join("\n");
  for (const a of artifacts) {
    const leaks = ctx.secrets.leaksInto(expand(a.content));
    if (a.secret) continue;
    assert.deepEqual(leaks, [], `${a.path} holds secrets but is not marked secret`);
  }
  // Ignition stays 0600 on every node, but only a server's carries tokens: an agent's first-boot config has none
  const agentIgn = (p: string) => /^ignition\/(worker\d|storage1)\.ign$/.test(p);
  for (const a of artifacts.filter((x) => x.secret && !agentIgn(x.path))) assert.ok(ctx.secrets.leaksInto(expand(a.content)).length > 0, `${a.path} is marked secret but holds none`);
  for (const a of artifacts.filter((x) => agentIgn(x.path))) assert.deepEqual(ctx.secrets.leaksInto(expand(a.content)), [], `${a.path}: an agent's Ignition holds no token`);
  const masked = ctx.secrets.mask(file("k3s/master1/config.yaml"));
  assert.match(masked, /token: <secret:k3s-token>/);
});

test("the topology diagram shows every host with its address", () => {
  const svg = file("topology.svg");
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  for (const h of ctx.spec.hosts) {
    assert.ok(svg.includes(`>${h.name}<`), `${h.name} missing`);
    assert.ok(svg.includes(h.address), `${h.address} missing`);
  }
  assert.ok(svg.includes("10.17.5.10"));
});

test("example specs validate and render", async () => {
  const { readdirSync } = await import("node:fs");
  for (const dir of readdirSync(join(ROOT, "examples"))) {
    const yaml = readFileSync(join(ROOT, "examples", dir, "cluster.yaml"), "utf8");
    const out = renderAll(contextFor(yaml));
    assert.ok(out.length > 20, `${dir} rendered ${out.length} files`);
  }
});

test("firewall and VPS rulesets: port forwards into the tunnel and default-drop between subnets", () => {
  const fw = file("firewall/nftables.nft");
  assert.match(fw, /chain forward \{\n\s+type filter hook forward priority filter; policy drop;/);
  assert.match(fw, /iifname "wg0" ip daddr 10\.17\.0\.2 tcp dport 80 dnat ip to 10\.17\.2\.10 comment "HTTP from the tunnel to Traefik"/);
  assert.match(fw, /ip saddr 10\.17\.2\.0\/24 oifname "eth4" ip daddr 10\.17\.5\.10\/32 tcp dport \{ 80, 443 \} accept comment "Traefik to the ingress VIP"/);
  assert.match(fw, /ip saddr 10\.17\.4\.0\/24 oifname "eth0" masquerade/);
  const vps = file("wireguard/vps1/nftables.nft");
  assert.match(vps, /iifname "eth0" ip saddr \{ 173\.245\.48\.0\/20, [^}]+ \} tcp dport \{ 80, 443 \} dnat ip to 10\.17\.0\.2/);
  assert.match(vps, /iifname "eth0" udp dport 51820 accept/);
  assert.doesNotMatch(vps, /masquerade/);
  const pf = file("firewall/pfsense.xml");
  assert.match(pf, /<target>FMC_edge<\/target>/);
  assert.match(pf, /<name>FMC_edge<\/name>\n\s+<type>host<\/type>\n\s+<address>10\.17\.2\.10<\/address>/);
});

test("renderers quote for their target or refuse, even for values that skipped validation", () => {
  type Mutable = { -readonly [K in keyof typeof ctx.spec]: (typeof ctx.spec)[K] };
  const hostile = (edit: (s: Mutable) => void) => {
    const spec = structuredClone(ctx.spec) as Mutable;
    edit(spec);
    return { ...ctx, spec, topo: new Topology(spec, ctx.topo.sshKeys) };
  };
  // shell: the value arrives as one literal word, whatever it holds
  const evil = "/dev/vdb$(touch /tmp/fmc-pwned)`reboot`';x";
  const script = lvmPlan(hostile((s) => (s.storage!.device = evil)));
  const device = spawnSync("bash", ["-c", `${script.split("\n").find((l) => l.startsWith("DEVICE="))}; printf %s "$DEVICE"`], { encoding: "utf8" });
  assert.equal(device.stdout, evil);
  const realm = ipaServerInstall(hostile((s) => (s.identity = { host: "freeipa1", realm: "X --ds-password y" })));
  assert.match(realm, /--realm 'X --ds-password y'/);
  // targets that cannot represent the value refuse it
  const refuses = (what: string, fn: () => unknown) => assert.throws(fn, (e: Error & { code?: string }) => e.code === "RENDER_UNSAFE", what);
  refuses("a newline in a shell word", () => lvmPlan(hostile((s) => (s.storage!.device = "/dev/vdb\nreboot"))));
  refuses("a space in a mount unit path", () => volumeMountUnits(hostile((s) => (s.storage!.volumes[0]!.mount = "/srv/a b"))));
  refuses("a newline in an NFS option", () => exportsFile(hostile((s) => (s.storage!.exports[0]!.options = ["rw)\n/ *(rw"]))));
  refuses("a quote in an nft comment", () => firewallNftables(hostile((s) => (s.firewall!.rules[0]!.description = 'DNS" drop'))));
  refuses("a newline in the WireGuard endpoint", () => {
    const c = hostile((s) => (s.wireguard!.endpoint = "vps.example.com\nPostUp = touch /tmp/x"));
    return wgConfig(c, tunnelOf(c)!, "lan");
  });
  refuses("a WireGuard interface that is a path", () => renderWireguard(hostile((s) => (s.wireguard!.interface = "../../../../tmp/x"))));
  refuses("a brace in a keepalived interface", () => {
    const c = hostile((s) => (s.hosts[9]!.interface = "eth0 }"));
    return keepalivedConfig(c, c.topo.host("loadbalancer1"));
  });
  refuses("an Ignition file path out of its directory", () => {
    const c = hostile((s) => (s.hosts[0]!.interface = "../../../etc/cron.d/x"));
    return ignitionConfig(c, c.topo.host("master1"));
  });
  // XML escapes what it can
  const pf = pfsenseFragment(hostile((s) => (s.firewall!.rules[0]!.description = "<script>&'")));
  assert.match(pf, /<descr>&lt;script&gt;&amp;&apos;<\/descr>/);
});

test("HAProxy: the API frontend port is configurable, the servers are reached on 6443", () => {
  const yaml = SEED_YAML.replace("k3s:\n", "loadBalancer:\n  apiPort: 7443\nk3s:\n");
  const c = contextFor(yaml);
  const cfg = renderAll(c).find((a) => a.path === "haproxy/loadbalancer1/haproxy.cfg")!.content;
  assert.match(cfg, /^frontend k8s-api\n\s+bind :7443\n/m);
  const api = cfg.split(/^backend k8s-api\n/m)[1]!.split("\n\n")[0]!;
  assert.deepEqual(api.split("\n").filter((l) => l.trim().startsWith("server")).map((l) => l.trim().split(" ")[2]), ["10.17.4.21:6443", "10.17.4.22:6443", "10.17.4.23:6443"]);
  // nodes join through the frontend port
  assert.equal(parseYaml(renderAll(c).find((a) => a.path === "k3s/worker1/config.yaml")!.content).server, "https://10.17.5.10:7443");
});
