// keepalived.conf per VIP holder (load balancers and edge nodes). Unicast VRRP between
// the holders, a vrrp_script that drops the node to FAULT when its proxy is not
// running, and authentication from the secret store.
import type { Host, Vip } from "../spec/schema.js";
import type { Artifact, RenderContext } from "./types.js";
import { HEADER, lines } from "./types.js";
import { configWord } from "./quote.js";

const word = (v: string) => configWord("keepalived.conf", v);

/** The service a VIP's holders must be running for the VIP to stay on them. */
export function trackedService(vip: Vip): string {
  return vip.role === "loadbalancer" ? "haproxy" : "traefik";
}

export function keepalivedConfig(ctx: RenderContext, host: Host): string {
  const { spec, topo } = ctx;
  const vips = spec.vips.filter((v) => host.roles.includes(v.role));
  const services = [...new Set(vips.map(trackedService))].sort();
  return lines(
    HEADER("#"),
    "global_defs {",
    `    router_id ${word(host.name)}`,
    "    enable_script_security",
    "    script_user root",
    "}",
    "",
    ...services.flatMap((svc) => [
      `vrrp_script chk_${svc} {`,
      `    script "/usr/bin/systemctl is-active --quiet ${svc}.service"`,
      "    interval 2",
      "    timeout 2",
      "    fall 2",
      "    rise 2",
      "}",
      "",
    ]),
    ...vips.flatMap((vip) => {
      const holders = topo.vipHolders(vip);
      const rank = holders.findIndex((h) => h.name === host.name);
      const peers = holders.filter((h) => h.name !== host.name);
      return [
        `vrrp_instance VI_${word(vip.name)} {`,
        "    state BACKUP",
        `    interface ${word(host.interface)}`,
        `    virtual_router_id ${vip.routerId}`,
        `    priority ${Math.max(1, 110 - rank * 10)}`,
        "    advert_int 1",
        `    unicast_src_ip ${word(host.address)}`,
        "    unicast_peer {",
        ...peers.map((p) => `        ${word(p.address)}`),
        "    }",
        "    authentication {",
        "        auth_type PASS",
        `        auth_pass ${word(ctx.secrets.get(`vrrp-${vip.name}`))}`,
        "    }",
        "    virtual_ipaddress {",
        `        ${word(vip.address)}/${topo.prefixOf(vip.address)} dev ${word(host.interface)}`,
        "    }",
        "    track_script {",
        `        chk_${trackedService(vip)}`,
        "    }",
        "}",
        "",
      ];
    }),
  );
}

export function renderKeepalived(ctx: RenderContext): Artifact[] {
  const holders = ctx.spec.hosts.filter((h) => ctx.spec.vips.some((v) => h.roles.includes(v.role)));
  return holders.map((h) => ({ path: `keepalived/${h.name}/keepalived.conf`, content: keepalivedConfig(ctx, h), secret: true }));
}
