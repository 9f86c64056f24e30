// Terraform JSON: libvirt (dmacvicar/libvirt 0.8.x) VMs, disks and networks for every
// host with a `vm` section, booting Flatcar from its Ignition and AlmaLinux/Debian from
// cloud-init; and Cloudflare (cloudflare/cloudflare 5.x) records, SSL mode and DNSSEC.
// Secrets stay out: Ignition is read with file(), API tokens are variables.
import { stringify } from "yaml";
import type { Host } from "../spec/schema.js";
import type { Artifact, RenderContext } from "./types.js";
import { HEADER_TEXT } from "./types.js";
import { tfString as lit } from "./quote.js";

const GiB = 1024 ** 3;
const id = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, "_");
const ref = (type: string, name: string, attr = "id") => `\${${type}.${id(name)}.${attr}}`;

function networkInterface(ctx: RenderContext, h: Host): Record<string, unknown> {
  const subnet = ctx.topo.subnetOf(h.address)!;
  const base = { addresses: [lit(h.address)], hostname: lit(h.name), wait_for_lease: false };
  return subnet.libvirt === "nat" ? { ...base, network_id: ref("libvirt_network", subnet.name) } : { ...base, bridge: lit(ctx.spec.network.bridge) };
}

export function cloudInit(ctx: RenderContext, h: Host): { userData: string; networkConfig: string } {
  const { topo } = ctx;
  const gw = topo.gatewayOf(h.address);
  const user = topo.sshUser(h);
  const userData = {
    hostname: h.name,
    fqdn: topo.fqdn(h.name),
    manage_etc_hosts: true,
    disable_root: user !== "root",
    ssh_pwauth: false,
    users: [{ name: user, ...(user === "root" ? {} : { sudo: "ALL=(ALL) NOPASSWD:ALL", shell: "/bin/bash" }), ssh_authorized_keys: [...topo.keysOf(h)] }],
    timezone: "UTC",
    ntp: { enabled: true, servers: ctx.spec.network.ntp },
    runcmd: [["swapoff", "-a"]],
  };
  const networkConfig = {
    version: 2,
    ethernets: {
      [h.interface]: {
        addresses: [`${h.address}/${topo.prefixOf(h.address)}`],
        ...(gw ? { routes: [{ to: "default", via: gw }] } : {}),
        nameservers: { addresses: topo.dnsServers, search: [ctx.spec.domain] },
      },
    },
  };
  return { userData: `#cloud-config\n${stringify(userData)}`, networkConfig: stringify(networkConfig) };
}

export function libvirtTerraform(ctx: RenderContext): Record<string, unknown> {
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
  for (const s of spec.network.subnets.filter((x) => x.libvirt === "nat")) {
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
      network_interface: [networkInterface(ctx, h)],
      console: [{ type: "pty", target_port: "0", target_type: "serial" }],
    };
    if (h.os === "flatcar") {
      resource.libvirt_ignition![h.name] = { name: `${h.name}.ign`, pool: ref("libvirt_pool", pool, "name"), content: `\${file("\${path.module}/../ignition/${h.name}.ign")}` };
      domain.coreos_ignition = ref("libvirt_ignition", h.name);
    } else {
      resource.libvirt_cloudinit_disk![h.name] = {
        name: `${h.name}-cloudinit.iso`,
        pool: ref("libvirt_pool", pool, "name"),
        user_data: `\${file("\${path.module}/cloudinit/${h.name}.user-data.yaml")}`,
        network_config: `\${file("\${path.module}/cloudinit/${h.name}.network-config.yaml")}`,
      };
      domain.cloudinit = ref("libvirt_cloudinit_disk", h.name);
    }
    resource.libvirt_domain![h.name] = domain;
  }
  for (const k of Object.keys(resource)) if (Object.keys(resource[k]!).length === 0) delete resource[k];
  const variable: Record<string, unknown> = {
    libvirt_uri: { type: "string", default: lit(spec.provisioning.libvirtUri), description: "libvirt connection URI" },
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
    terraform: { required_providers: { libvirt: { source: "dmacvicar/libvirt", version: "~> 0.8.3" } } },
    provider: { libvirt: { uri: "${var.libvirt_uri}" } },
    variable,
    resource,
  };
}

export function cloudflareTerraform(ctx: RenderContext): Record<string, unknown> | undefined {
  const cf = ctx.spec.cloudflare;
  const gateway = ctx.topo.withRole("gateway")[0];
  if (!cf || !gateway?.publicAddress) return undefined;
  const zone = "${var.cloudflare_zone_id}";
  const records: Record<string, unknown> = {};
  for (const r of cf.records) {
    const fqdn = r.name === "@" ? cf.zone : `${r.name}.${cf.zone}`;
    records[id(r.name === "@" ? "apex" : r.name)] = { zone_id: zone, name: lit(fqdn), type: "A", content: lit(gateway.publicAddress), proxied: r.proxied, ttl: 1 };
  }
  const resource: Record<string, unknown> = {
    cloudflare_dns_record: records,
    cloudflare_zone_setting: {
      ssl: { zone_id: zone, setting_id: "ssl", value: cf.sslMode },
      always_use_https: { zone_id: zone, setting_id: "always_use_https", value: "on" },
      min_tls_version: { zone_id: zone, setting_id: "min_tls_version", value: "1.2" },
    },
  };
  if (cf.dnssec) resource.cloudflare_zone_dnssec = { zone: { zone_id: zone, status: "active" } };
  return {
    "//": HEADER_TEXT,
    terraform: { required_providers: { cloudflare: { source: "cloudflare/cloudflare", version: "~> 5.22" } } },
    provider: { cloudflare: { api_token: "${var.cloudflare_api_token}" } },
    variable: {
      cloudflare_api_token: { type: "string", sensitive: true, description: "API token with Zone:DNS:Edit and Zone:Settings:Edit" },
      cloudflare_zone_id: { type: "string", description: lit(`zone id of ${cf.zone}`) },
    },
    resource,
  };
}

export function renderTerraform(ctx: RenderContext): Artifact[] {
  const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";
  const out: Artifact[] = [{ path: "terraform/main.tf.json", content: json(libvirtTerraform(ctx)) }];
  const cf = cloudflareTerraform(ctx);
  if (cf) out.push({ path: "terraform/cloudflare.tf.json", content: json(cf) });
  for (const h of ctx.spec.hosts.filter((x) => x.vm && x.os !== "flatcar")) {
    const ci = cloudInit(ctx, h);
    out.push({ path: `terraform/cloudinit/${h.name}.user-data.yaml`, content: ci.userData });
    out.push({ path: `terraform/cloudinit/${h.name}.network-config.yaml`, content: ci.networkConfig });
  }
  return out;
}
