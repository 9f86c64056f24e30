// Terraform JSON in two root modules, each a working directory of its own, so a DNS change
// never plans against the hypervisor: terraform/libvirt/ holds the libvirt
// (dmacvicar/libvirt 0.8.x) VMs, disks and networks for every host with a `vm` section,
// booting Flatcar from its Ignition and AlmaLinux/Debian from cloud-init; terraform/cloudflare/
// the Cloudflare (cloudflare/cloudflare 5.x) records, SSL mode and DNSSEC, whose DS record
// is an output for the registrar. Secrets stay out: Ignition is read with file(), API
// tokens and the state passphrase are variables (fmc provision sets them as TF_VAR_…).
// Each module's state lives in its directory, or in the backend the spec names; with
// provisioning.stateEncryption, OpenTofu encrypts it (it holds every Ignition config).
//
// With a firewall host, every LAN subnet is an isolated libvirt network (no NAT, no DHCP,
// no forwarding by the KVM host) whose first address belongs to the firewall's LAN
// interface, so traffic between subnets crosses the firewall and its rules. The KVM host
// keeps the subnet's last usable address there, to reach the VMs for SSH on-link (as the
// lab's hypervisor does). A libvirt `nat` network would make the KVM host the gateway
// and reject inbound traffic, so validation refuses it when a firewall exists.
import { stringify } from "yaml";
import type { Host, Subnet } from "../model/schema.js";
import { broadcast, cidrOf, formatIp, ipOf } from "../model/net.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";
import { tfString as lit } from "./quote.js";
import { etcHosts } from "./dns.js";
import { recordInZone } from "../model/checks.js";
import { ntpSources } from "../model/ntp.js";
import { FmcError } from "../errors.js";

/** The root modules, in the order fmc provision runs them. */
export const TERRAFORM_MODULES = ["libvirt", "cloudflare"] as const;
export type TerraformModule = (typeof TERRAFORM_MODULES)[number];
/** A module's working directory, relative to the output directory. */
export const moduleDir = (m: TerraformModule) => `terraform/${m}`;
/** The variable the OpenTofu state passphrase arrives in (as TF_VAR_fmc_state_passphrase). */
export const STATE_PASSPHRASE_VAR = "fmc_state_passphrase";
/** The variable the Cloudflare API token arrives in (as TF_VAR_cloudflare_api_token). */
export const CLOUDFLARE_TOKEN_VAR = "cloudflare_api_token";

const GiB = 1024 ** 3;
const id = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, "_");
const ref = (type: string, name: string, attr = "id") => `\${${type}.${id(name)}.${attr}}`;

/** The firewall host that routes between the subnets, when the spec has one. */
function routingFirewall(ctx: ClusterContext): Host | undefined {
  const name = ctx.spec.firewall?.host;
  const h = name === undefined ? undefined : ctx.topo.hostsByName.get(name);
  return h?.roles.includes("firewall") ? h : undefined;
}

export interface LanNetwork {
  readonly subnet: Subnet;
  /** The firewall's interface on it (eth1, eth2, … by default) and its address there. */
  readonly firewallInterface: string;
  readonly gateway: string;
  /** Host bridge name (at most 15 characters): fmc<N>-<subnet>, N as in the firewall's ethN default. */
  readonly bridge: string;
  /** The KVM host's own address on the segment: the last usable one. */
  readonly hostAddress: string;
  /** MAC of the firewall's NIC on it, derived from the gateway so the guest can name it by MAC. */
  readonly firewallMac: string;
}

const mac = (first: string, ip: number) => `${first}:${[(ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].map((o) => o.toString(16).padStart(2, "0")).join(":")}`;

/**
 * The LAN segments Terraform renders as isolated libvirt networks: with a firewall, every
 * LAN subnet that Terraform provides (libvirt: bridge), in topo.lanSegments order.
 */
export function lanNetworks(ctx: ClusterContext): LanNetwork[] {
  if (!routingFirewall(ctx)) return [];
  return ctx.topo.lanSegments.flatMap((l, i) =>
    l.subnet.libvirt === "none"
      ? []
      : [{
          subnet: l.subnet,
          firewallInterface: l.firewallInterface,
          gateway: l.gateway,
          bridge: `fmc${i + 1}-${l.subnet.name}`.slice(0, 15),
          hostAddress: formatIp(broadcast(cidrOf(l.subnet.cidr)) - 1),
          firewallMac: mac("52:54:00", ipOf(l.gateway)),
        }],
  );
}

/** The firewall VM's WAN NIC: on the host bridge to the physical LAN (the home router's side). */
const wanMac = (fw: Host) => mac("52:54:01", ipOf(fw.address));

/**
 * libvirt puts the provider's first address (the .1) on the host side of an isolated
 * network; this stylesheet (the provider's xml.xslt) moves the KVM host to the last usable
 * address, leaves out DHCP and switches libvirt's dnsmasq off. The provider reads the
 * network back as the same CIDR, so plans stay clean.
 */
export function hostAddressXslt(hostAddress: string): string {
  return [
    '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">',
    '  <xsl:output omit-xml-declaration="yes" indent="yes"/>',
    '  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>',
    `  <xsl:template match="/network/ip/@address"><xsl:attribute name="address">${hostAddress}</xsl:attribute></xsl:template>`,
    '  <xsl:template match="/network/ip/dhcp"/>',
    '  <xsl:template match="/network/dns"/>',
    '  <xsl:template match="/network"><xsl:copy><xsl:apply-templates select="@*|node()"/><dns enable="no"/></xsl:copy></xsl:template>',
    "</xsl:stylesheet>",
    "",
  ].join("\n");
}

function networkInterfaces(ctx: ClusterContext, h: Host): Array<Record<string, unknown>> {
  const fw = routingFirewall(ctx);
  const lans = lanNetworks(ctx);
  if (fw && h.name === fw.name) {
    // WAN first, then one NIC per LAN network in lanSegments order: the guest names them
    // by MAC (cloud-init set-name), so eth1, eth2, … match firewallInterface whatever the image's naming
    return [
      { bridge: lit(ctx.spec.network.bridge), mac: wanMac(fw), wait_for_lease: false },
      ...lans.map((l) => ({ network_id: ref("libvirt_network", l.subnet.name), mac: l.firewallMac, wait_for_lease: false })),
    ];
  }
  const subnet = ctx.topo.subnetOf(h.address)!;
  const base = { addresses: [lit(h.address)], hostname: lit(h.name), wait_for_lease: false };
  // no addresses on an isolated network: the provider would add them as DHCP hosts, and
  // there is no DHCP there (cloud-init and Ignition set the static address)
  if (lans.some((l) => l.subnet === subnet)) return [{ network_id: ref("libvirt_network", subnet.name), wait_for_lease: false }];
  return [subnet.libvirt === "nat" ? { ...base, network_id: ref("libvirt_network", subnet.name) } : { ...base, bridge: lit(ctx.spec.network.bridge) }];
}

/** cloud-init network config of the firewall VM: DHCP on the WAN, each LAN interface holding its subnet's gateway. */
function firewallNetworkConfig(ctx: ClusterContext, fw: Host): Record<string, unknown> {
  const { topo } = ctx;
  const nameservers = { addresses: topo.dnsServers, search: [ctx.spec.domain] };
  const wan = ctx.spec.firewall!.wanInterface;
  const ethernets: Record<string, unknown> = {
    // the uplink's router hands out the address and default route; the internal DNS stays first
    [wan]: { match: { macaddress: wanMac(fw) }, "set-name": wan, dhcp4: true, "dhcp4-overrides": { "use-dns": false }, nameservers },
  };
  for (const l of lanNetworks(ctx)) {
    const prefix = cidrOf(l.subnet.cidr).prefix;
    const own = topo.subnetOf(fw.address) === l.subnet && fw.address !== l.gateway ? [`${fw.address}/${prefix}`] : [];
    ethernets[l.firewallInterface] = { match: { macaddress: l.firewallMac }, "set-name": l.firewallInterface, addresses: [`${l.gateway}/${prefix}`, ...own] };
  }
  return { version: 2, ethernets };
}

/** cloud-init's ntp module: the OS's own pool, or the servers the spec names (ntpSources). */
function ntpConfig(ctx: ClusterContext, h: Host): Record<string, unknown> {
  const { pools, servers } = ntpSources(ctx.spec, h.os);
  return { enabled: true, ...(pools.length ? { pools: [...pools] } : {}), ...(servers.length ? { servers: [...servers] } : {}) };
}

/**
 * The `terraform { backend … }` of one module, from provisioning.backend: every module
 * gets its own state (file, key, address or schema). Credentials are never here: each
 * backend reads them from the environment.
 */
function backendConfig(ctx: ClusterContext, module: TerraformModule): Record<string, unknown> | undefined {
  const b = ctx.spec.provisioning.backend;
  const name = ctx.spec.name;
  if (b?.local) return { local: { path: lit(`${b.local.dir}/${name}-${module}.tfstate`) } };
  if (b?.s3) {
    const s3 = b.s3;
    const region = s3.region ?? (s3.endpoint ? "us-east-1" : undefined);
    return {
      s3: {
        bucket: s3.bucket,
        key: `${s3.keyPrefix}/${name}/${module}.tfstate`,
        ...(region ? { region } : {}),
        // an S3-compatible store has no STS, no instance metadata and no AWS regions to check
        ...(s3.endpoint
          ? { endpoints: { s3: s3.endpoint }, use_path_style: true, skip_credentials_validation: true, skip_region_validation: true, skip_requesting_account_id: true, skip_metadata_api_check: true, skip_s3_checksum: true }
          : {}),
        encrypt: s3.encrypt ?? !s3.endpoint,
        ...(s3.lockfile ? { use_lockfile: true } : {}),
      },
    };
  }
  if (b?.http) {
    const address = `${b.http.address}/${name}-${module}`;
    return { http: { address, lock_address: address, unlock_address: address, lock_method: b.http.lockMethod, unlock_method: b.http.unlockMethod } };
  }
  if (b?.pg) {
    const schema = `${b.pg.schemaPrefix ?? `fmc_${name.replace(/-/g, "_")}`}_${module}`;
    // PostgreSQL cuts longer names to 63 bytes, and two clusters' schemas could then meet
    if (schema.length > 63) {
      throw new FmcError("SPEC_INVALID", `provisioning.backend.pg: the schema name ${schema} is longer than 63 characters`, "set provisioning.backend.pg.schemaPrefix to a shorter name");
    }
    return { pg: { ...(b.pg.connStr ? { conn_str: b.pg.connStr } : {}), schema_name: schema } };
  }
  return undefined;
}

/**
 * OpenTofu's `terraform { encryption … }` (1.8 or later, for the variable in the key
 * provider): AES-GCM with a PBKDF2 key from the passphrase variable, for state and plan
 * files. Enforced (no plain-text state is ever read or written), except while
 * fromUnencrypted lets the first run read the old unencrypted state. In JSON, the method
 * references are bare traversals and the key reference an interpolation, as OpenTofu's
 * own JSON tests write them (internal/encryption/dual_custody_test.go).
 */
function encryptionConfig(ctx: ClusterContext): Record<string, unknown> | undefined {
  const e = ctx.spec.provisioning.stateEncryption;
  if (!e) return undefined;
  const target = { method: "method.aes_gcm.fmc", ...(e.fromUnencrypted ? { fallback: { method: "method.unencrypted.migrate" } } : { enforced: true }) };
  return {
    key_provider: { pbkdf2: { fmc: { passphrase: `\${var.${STATE_PASSPHRASE_VAR}}` } } },
    method: { aes_gcm: { fmc: { keys: "${key_provider.pbkdf2.fmc}" } }, ...(e.fromUnencrypted ? { unencrypted: { migrate: {} } } : {}) },
    state: target,
    plan: target,
  };
}

/** The `terraform` block of a module: its provider, and its backend and encryption when the spec has them. */
function terraformBlock(ctx: ClusterContext, module: TerraformModule, providers: Record<string, unknown>): Record<string, unknown> {
  const backend = backendConfig(ctx, module);
  const encryption = encryptionConfig(ctx);
  return {
    ...(encryption ? { required_version: ">= 1.8.0" } : {}),
    required_providers: providers,
    ...(backend ? { backend } : {}),
    ...(encryption ? { encryption } : {}),
  };
}

/** The passphrase variable, when the state is encrypted. */
function stateVariables(ctx: ClusterContext): Record<string, unknown> {
  return ctx.spec.provisioning.stateEncryption
    ? { [STATE_PASSPHRASE_VAR]: { type: "string", sensitive: true, description: "OpenTofu state encryption passphrase (fmc provision passes it from fmc's state directory)" } }
    : {};
}

export function cloudInit(ctx: ClusterContext, h: Host): { userData: string; networkConfig: string } {
  const { topo } = ctx;
  const gw = topo.gatewayOf(h.address);
  const user = topo.sshUser(h);
  const userData = {
    hostname: h.name,
    fqdn: topo.fqdn(h.name),
    // the FQDN on the real address: cloud-init's manage_etc_hosts would put it on 127.0.0.1 (ipa-server-install aborts)
    manage_etc_hosts: false,
    write_files: [{ path: "/etc/hosts", permissions: "0644", content: etcHosts(ctx, h) }],
    disable_root: user !== "root",
    ssh_pwauth: false,
    users: [{ name: user, ...(user === "root" ? {} : { sudo: "ALL=(ALL) NOPASSWD:ALL", shell: "/bin/bash" }), ssh_authorized_keys: [...topo.keysOf(h)] }],
    timezone: "UTC",
    ntp: ntpConfig(ctx, h),
    runcmd: [["swapoff", "-a"]],
  };
  const networkConfig = h.name === routingFirewall(ctx)?.name ? firewallNetworkConfig(ctx, h) : {
    version: 2,
    ethernets: {
      [h.interface]: {
        addresses: [`${h.address}/${topo.prefixOf(h.address)}`],
        // 0.0.0.0/0, not "default": cloud-init before 25.3 parses "default" only when it hands
        // the config to netplan unread; AlmaLinux's sysconfig/NetworkManager renderers and
        // Debian's ENI renderer raise "Address default is not a valid ip address"
        ...(gw ? { routes: [{ to: "0.0.0.0/0", via: gw }] } : {}),
        nameservers: { addresses: topo.dnsServers, search: [ctx.spec.domain] },
      },
    },
  };
  // YAML 1.1, as cloud-init's PyYAML reads it: a MAC of decimal digits (52:54:01:11:00:02)
  // is otherwise a base-60 integer there, and yes/on booleans
  const yaml11 = (v: unknown) => stringify(v, { version: "1.1" });
  return { userData: `#cloud-config\n${yaml11(userData)}`, networkConfig: yaml11(networkConfig) };
}

function libvirtTerraform(ctx: ClusterContext): Record<string, unknown> {
  const { spec } = ctx;
  const vms = spec.hosts.filter((h) => h.vm);
  const pool = "fmc";
  const resource: Record<string, Record<string, unknown>> = {
    libvirt_pool: { [pool]: { name: lit(`${spec.name}-pool`), type: "dir", path: lit(spec.provisioning.poolPath) } },
    libvirt_network: {},
    libvirt_volume: {},
    libvirt_ignition: {},
    libvirt_cloudinit_disk: {},
    libvirt_domain: {},
  };
  for (const l of lanNetworks(ctx)) {
    resource.libvirt_network![id(l.subnet.name)] = {
      name: lit(`${spec.name}-${l.subnet.name}`),
      mode: "none",
      bridge: lit(l.bridge),
      addresses: [lit(l.subnet.cidr)],
      autostart: true,
      dhcp: { enabled: false },
      dns: { enabled: false },
      xml: { xslt: hostAddressXslt(l.hostAddress) }, // fmc's own text around a formatted address
    };
  }
  // no firewall: the old layout, libvirt NAT networks (the KVM host is their gateway)
  for (const s of routingFirewall(ctx) ? [] : spec.network.subnets.filter((x) => x.libvirt === "nat")) {
    resource.libvirt_network![id(s.name)] = {
      name: lit(`${spec.name}-${s.name}`),
      mode: "nat",
      domain: lit(spec.domain),
      addresses: [lit(s.cidr)],
      autostart: true,
      dhcp: { enabled: false },
      dns: { enabled: false },
    };
  }
  const images = new Set(vms.map((h) => h.os));
  for (const os of [...images].sort()) {
    resource.libvirt_volume![`${os}_base`] = { name: `${os}-base.qcow2`, pool: ref("libvirt_pool", pool, "name"), source: `\${var.${os}_image}`, format: "qcow2" };
  }
  for (const h of vms) {
    const vm = h.vm!;
    const volumes = resource.libvirt_volume!;
    volumes[`${h.name}_root`] = { name: lit(`${h.name}-root.qcow2`), pool: ref("libvirt_pool", pool, "name"), base_volume_id: ref("libvirt_volume", `${h.os}_base`), size: vm.diskGiB * GiB, format: "qcow2" };
    for (const d of vm.dataDisks) {
      volumes[`${h.name}_${d.name}`] = { name: lit(`${h.name}-${d.name}.qcow2`), pool: ref("libvirt_pool", pool, "name"), size: d.sizeGiB * GiB, format: "qcow2" };
    }
    const domain: Record<string, unknown> = {
      name: lit(h.name),
      vcpu: vm.vcpu,
      memory: vm.memoryMiB,
      autostart: true,
      qemu_agent: h.os !== "flatcar",
      disk: [{ volume_id: ref("libvirt_volume", `${h.name}_root`) }, ...vm.dataDisks.map((d) => ({ volume_id: ref("libvirt_volume", `${h.name}_${d.name}`) }))],
      network_interface: networkInterfaces(ctx, h),
      console: [{ type: "pty", target_port: "0", target_type: "serial" }],
    };
    // without a mode the provider writes no <cpu>, and QEMU falls back to qemu64 (no x86-64-v2)
    if (spec.provisioning.cpuMode !== "none") domain.cpu = { mode: spec.provisioning.cpuMode };
    // Ignition and cloud-init are read at first boot only, and the provider (0.8.3) forces a
    // new libvirt_ignition, libvirt_cloudinit_disk and, through coreos_ignition, a new domain
    // (DomainDestroy: a power cut) when their content changes: a K3s version, SSH key or NTP
    // change would replace every VM at once, all etcd members included. Later changes reach
    // running hosts through fmc apply; new VMs get the current content. Both sides need it:
    // ignoring only the domain's reference would still replace the disk under it.
    if (h.os === "flatcar") {
      resource.libvirt_ignition![h.name] = {
        name: `${h.name}.ign`,
        pool: ref("libvirt_pool", pool, "name"),
        content: `\${file("\${path.module}/../../ignition/${h.name}.ign")}`,
        lifecycle: { ignore_changes: ["content"] },
      };
      domain.coreos_ignition = ref("libvirt_ignition", h.name);
      domain.lifecycle = { ignore_changes: ["coreos_ignition"] };
    } else {
      resource.libvirt_cloudinit_disk![h.name] = {
        name: `${h.name}-cloudinit.iso`,
        pool: ref("libvirt_pool", pool, "name"),
        user_data: `\${file("\${path.module}/cloudinit/${h.name}.user-data.yaml")}`,
        network_config: `\${file("\${path.module}/cloudinit/${h.name}.network-config.yaml")}`,
        lifecycle: { ignore_changes: ["user_data", "network_config"] },
      };
      domain.cloudinit = ref("libvirt_cloudinit_disk", h.name);
      domain.lifecycle = { ignore_changes: ["cloudinit"] };
    }
    resource.libvirt_domain![h.name] = domain;
  }
  for (const k of Object.keys(resource)) if (Object.keys(resource[k]!).length === 0) delete resource[k];
  const variable: Record<string, unknown> = {
    libvirt_uri: { type: "string", default: lit(spec.provisioning.libvirtUri), description: "libvirt connection URI" },
    ...stateVariables(ctx),
  };
  for (const os of [...images].sort()) {
    variable[`${os}_image`] = {
      type: "string",
      description:
        os === "flatcar"
          ? `path or URL of flatcar_production_qemu_image.img (${spec.provisioning.flatcarChannel} channel)`
          : `path or URL of the ${os} generic cloud image (qcow2)`,
    };
  }
  return {
    "//": HEADER_TEXT,
    terraform: terraformBlock(ctx, "libvirt", { libvirt: { source: "dmacvicar/libvirt", version: "~> 0.8.3" } }),
    provider: { libvirt: { uri: "${var.libvirt_uri}" } },
    variable,
    resource,
  };
}

/** A record's full name: "@" is the zone's apex. */
export const recordFqdn = (zone: string, name: string) => (name === "@" ? zone : `${name}.${zone}`);

/** wireguard.endpoint's record name in the Cloudflare zone ("@" for the apex), if it is a name there. */
function endpointRecord(ctx: ClusterContext): string | undefined {
  const { cloudflare, wireguard } = ctx.spec;
  return cloudflare && wireguard?.endpoint ? recordInZone(cloudflare.zone, wireguard.endpoint) : undefined;
}

export function cloudflareTerraform(ctx: ClusterContext): Record<string, unknown> | undefined {
  const cf = ctx.spec.cloudflare;
  const gateway = ctx.topo.withRole("gateway")[0];
  if (!cf || !gateway?.publicAddress) return undefined;
  const zone = "${var.cloudflare_zone_id}";
  const records: Record<string, unknown> = {};
  for (const r of cf.records) {
    records[id(r.name === "@" ? "apex" : r.name)] = { zone_id: zone, name: lit(recordFqdn(cf.zone, r.name)), type: "A", content: lit(gateway.publicAddress), proxied: r.proxied, ttl: 1 };
  }
  // the LAN peer dials the WireGuard endpoint over UDP, which Cloudflare's proxy does not
  // carry: a name in the zone gets its own DNS-only record (unless the spec lists it unproxied)
  const endpoint = endpointRecord(ctx);
  if (endpoint && !cf.records.some((r) => r.name === endpoint)) {
    records.wireguard_endpoint = { zone_id: zone, name: lit(recordFqdn(cf.zone, endpoint)), type: "A", content: lit(gateway.publicAddress), proxied: false, ttl: 1 };
  }
  const resource: Record<string, unknown> = {
    cloudflare_dns_record: records,
    cloudflare_zone_setting: {
      ssl: { zone_id: zone, setting_id: "ssl", value: cf.sslMode },
      always_use_https: { zone_id: zone, setting_id: "always_use_https", value: "on" },
      min_tls_version: { zone_id: zone, setting_id: "min_tls_version", value: "1.2" },
    },
  };
  // DNSSEC is only on once the registrar publishes the DS record in the parent zone: the
  // outputs carry it, whole and field by field (registrars ask for one or the other)
  const output: Record<string, unknown> = {};
  if (cf.dnssec) {
    resource.cloudflare_zone_dnssec = { zone: { zone_id: zone, status: "active" } };
    const attr = (a: string) => ref("cloudflare_zone_dnssec", "zone", a);
    output.dnssec_ds = { value: attr("ds"), description: lit(`the DS record of ${cf.zone} to enter at the registrar: <key tag> <algorithm> <digest type> <digest>`) };
    output.dnssec_registrar = {
      value: { key_tag: attr("key_tag"), algorithm: attr("algorithm"), digest_type: attr("digest_type"), digest: attr("digest"), flags: attr("flags"), public_key: attr("public_key") },
      description: "the same, field by field, with the DNSKEY flags and public key some registrars ask for instead",
    };
  }
  return {
    "//": HEADER_TEXT,
    terraform: terraformBlock(ctx, "cloudflare", { cloudflare: { source: "cloudflare/cloudflare", version: "~> 5.22" } }),
    provider: { cloudflare: { api_token: `\${var.${CLOUDFLARE_TOKEN_VAR}}` } },
    variable: {
      [CLOUDFLARE_TOKEN_VAR]: { type: "string", sensitive: true, description: "API token with Zone:DNS:Edit (records and DNSSEC) and Zone:Zone Settings:Edit on the zone (fmc provision passes it from fmc's state directory)" },
      cloudflare_zone_id: { type: "string", description: lit(`zone id of ${cf.zone}`) },
      ...stateVariables(ctx),
    },
    resource,
    ...(Object.keys(output).length ? { output } : {}),
  };
}

export function renderTerraform(ctx: ClusterContext): Artifact[] {
  const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";
  const libvirt = moduleDir("libvirt");
  const out: Artifact[] = [{ path: `${libvirt}/main.tf.json`, content: json(libvirtTerraform(ctx)) }];
  for (const h of ctx.spec.hosts.filter((x) => x.vm && x.os !== "flatcar")) {
    const ci = cloudInit(ctx, h);
    out.push({ path: `${libvirt}/cloudinit/${h.name}.user-data.yaml`, content: ci.userData });
    out.push({ path: `${libvirt}/cloudinit/${h.name}.network-config.yaml`, content: ci.networkConfig });
  }
  const cf = cloudflareTerraform(ctx);
  if (cf) out.push({ path: `${moduleDir("cloudflare")}/main.tf.json`, content: json(cf) });
  return out;
}

/** The modules a context renders: libvirt always, cloudflare with a zone and a gateway's public address. */
export function renderedModules(ctx: ClusterContext): TerraformModule[] {
  return cloudflareTerraform(ctx) ? ["libvirt", "cloudflare"] : ["libvirt"];
}
