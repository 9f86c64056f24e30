// keepalived.conf per VIP holder (load balancers and edge nodes): VRRPv3 with the spec's
// sub-second adverts, unicast between the holders, no preemption unless the spec asks,
// and a fast check of the local proxy's own health endpoint that drops the node to FAULT
// (and so moves the VIP) within about two checks of the proxy failing.
//
// Measured in network namespaces with keepalived 2.2.7 and HAProxy 2.6 (advert 100 ms,
// check every 200 ms): HAProxy SIGKILLed on the holder moves the VIP in 0.15-0.3 s, a
// powered-off holder in ≈0.41 s (3 adverts + skew), keepalived SIGKILLed ≈0.12 s with
// at most one request lost; the returning holder stays BACKUP (nopreempt).
// Why not the alternatives: vrrp_script's interval is whole seconds in 2.2.7 ("0.2" is
// refused, so a one-shot check is seen 0-1 s late: 0.13-0.8 s measured); track_process
// needs the kernel's process connector, which refuses it inside a network namespace
// ("Failed to set/clear process event listen - errno 111"), so the instance stays in
// FAULT there; track_file needs a second daemon to write the file (0.15-0.3 s, no better).
// So the vrrp_script runs a check loop (checkScriptPath) for most of each second.
import type { Host, Vip } from "../model/schema.js";
import type { OsFamilyName } from "../hosts/facts.js";
import { FAMILIES, specFamily } from "../hosts/os.js";
import type { Artifact, ClusterContext } from "./types.js";
import { HEADER, lines } from "./types.js";
import { configWord } from "./quote.js";

const word = (v: string) => configWord("keepalived.conf", v);

/**
 * The check loop keepalived runs (root-owned, not writable by others: enable_script_security),
 * in its OS family's script directory (/usr/libexec/keepalived on RHEL: its SELinux policy).
 */
export const checkScriptPath = (family: OsFamilyName): string => `${FAMILIES[family].keepalivedScriptDir}/fmc-check-proxy`;

/** The proxy a VIP's holders run: HAProxy on the load balancers, the edge engine on edge nodes. */
function trackedService(ctx: ClusterContext, vip: Vip): "haproxy" | "traefik" {
  return vip.role === "loadbalancer" ? "haproxy" : ctx.spec.edge.engine;
}

/**
 * The proxy's own health endpoint on the holder's address: HAProxy's `monitor-uri /ping`
 * on its metrics frontend, or Traefik's ping on its metrics entry point.
 */
function healthUrl(ctx: ClusterContext, vip: Vip, host: Host): string {
  const port = vip.role === "loadbalancer" ? ctx.spec.loadBalancer.metricsPort : ctx.spec.edge.metricsPort;
  return `http://${host.address}:${port}/ping`;
}

/** vrrp_script timing from spec.vrrp.checkMs: keepalived runs the loop every `interval` s. */
function checkTiming(checkMs: number): { interval: number; timeout: number; everyMs: number; spanMs: number } {
  const interval = Math.max(1, Math.ceil(checkMs / 1000));
  // checks until ~150 ms before the next run is due: a run still going then would be skipped
  const spanMs = checkMs < 1000 ? interval * 1000 - 150 : 0;
  // a run may add one retry (pause + a check of up to 0.5 s) after its span
  const timeout = interval + Math.ceil((2 * checkMs) / 1000) + 1;
  return { interval, timeout, everyMs: checkMs, spanMs };
}

/** A systemd drop-in for keepalived.service (Debian's and RHEL's units do not restart it). */
export const KEEPALIVED_DROPIN = "/etc/systemd/system/keepalived.service.d/fmc.conf";

/**
 * A killed keepalived leaves its VIP address on the interface (a duplicate of the new
 * holder's). Restarted, it drops it and stays BACKUP (nopreempt): measured, a SIGKILL
 * followed by a restart 1 s later lost at most one request in flight, no second outage.
 */
export function keepalivedDropIn(): string {
  return lines(HEADER("#"), "[Service]", "Restart=always", "RestartSec=1");
}

/** seconds with decimals, as keepalived reads advert_int: 100 -> "0.1", 1000 -> "1" */
const seconds = (ms: number) => String(ms / 1000);

/**
 * The check loop. vrrp_script runs a script at most once a second (keepalived 2.2 takes
 * whole seconds only), so the script itself checks every EVERY_MS until SPAN_MS have
 * passed. It fails at the second failed check in a row, so that one slow answer does not
 * move the VIP (and cut the connections it holds). Without bash's EPOCHREALTIME (bash < 5)
 * a run is one check.
 */
export function checkScript(): string {
  return lines(
    "#!/bin/bash",
    HEADER("#"),
    "# Keepalived's check of the local proxy: fmc-check-proxy URL EVERY_MS SPAN_MS",
    "url=$1 every_ms=$2 span_ms=$3",
    "printf -v pause '%d.%03d' $((every_ms / 1000)) $((every_ms % 1000))",
    "start=${EPOCHREALTIME//[!0-9]/}",
    "failed=0",
    "while :; do",
    '  if curl -fsS -o /dev/null --max-time 0.5 "$url"; then failed=0; else failed=$((failed + 1)); fi',
    '  [ "$failed" -ge 2 ] && exit 1',
    "  now=${EPOCHREALTIME//[!0-9]/}",
    "  # done when the next check would end past the span, and the last check passed",
    '  if [ -z "$now" ] || [ $(((now - start) / 1000 + every_ms)) -ge "$span_ms" ]; then',
    '    [ "$failed" -eq 0 ] && exit 0',
    "  fi",
    '  sleep "$pause"',
    "done",
  );
}

/** keepalived.conf for `host`, naming the check script where `family` installs it. */
export function keepalivedConfig(ctx: ClusterContext, host: Host, family: OsFamilyName = specFamily(host.os)): string {
  const { spec, topo } = ctx;
  const script = checkScriptPath(family);
  const vrrp = spec.vrrp;
  const vips = spec.vips.filter((v) => host.roles.includes(v.role));
  const t = checkTiming(vrrp.checkMs);
  const check = (vip: Vip) => `chk_${trackedService(ctx, vip)}_${word(vip.name)}`;
  return lines(
    HEADER("#"),
    "global_defs {",
    `    router_id ${word(host.name)}`,
    "    enable_script_security",
    "    script_user root",
    // sub-second adverts need VRRPv3: v2 rounds advert_int to whole seconds
    "    vrrp_version 3",
    // v3 has no authentication: adverts from anyone but the unicast peers are dropped
    "    vrrp_check_unicast_src",
    "}",
    "",
    ...vips.flatMap((vip) => [
      `vrrp_script ${check(vip)} {`,
      `    script "${word(script)} ${word(healthUrl(ctx, vip, host))} ${t.everyMs} ${t.spanMs}"`,
      `    interval ${t.interval}`,
      `    timeout ${t.timeout}`,
      "    fall 1",
      "    rise 2",
      // a (re)started holder is not eligible until its proxy has answered
      "    init_fail",
      "}",
      "",
    ]),
    ...vips.flatMap((vip) => {
      const holders = topo.vipHolders(vip);
      const rank = holders.findIndex((h) => h.name === host.name);
      const peers = holders.filter((h) => h.name !== host.name);
      return [
        `vrrp_instance VI_${word(vip.name)} {`,
        // with nopreempt every holder starts as BACKUP; the first election goes by priority
        "    state BACKUP",
        ...(vrrp.preempt ? [] : ["    # a returning holder does not take the VIP back: no second outage", "    nopreempt"]),
        `    interface ${word(host.interface)}`,
        `    virtual_router_id ${vip.routerId}`,
        `    priority ${Math.max(1, 110 - rank * 10)}`,
        `    advert_int ${seconds(vrrp.advertMs)}`,
        // No authentication: VRRPv3 has none (keepalived ignores auth_type with v3), and v2's
        // PASS is a clear-text password anyway. Only the unicast peers below are heard.
        `    unicast_src_ip ${word(host.address)}`,
        "    unicast_peer {",
        ...peers.map((p) => `        ${word(p.address)}`),
        "    }",
        "    virtual_ipaddress {",
        `        ${word(vip.address)}/${topo.prefixOf(vip.address)} dev ${word(host.interface)}`,
        "    }",
        "    track_script {",
        `        ${check(vip)}`,
        "    }",
        "}",
        "",
      ];
    }),
  );
}

export function renderKeepalived(ctx: ClusterContext): Artifact[] {
  const holders = ctx.spec.hosts.filter((h) => ctx.spec.vips.some((v) => h.roles.includes(v.role)));
  return holders.flatMap((h) => [
    { path: `keepalived/${h.name}/keepalived.conf`, content: keepalivedConfig(ctx, h) },
    { path: `keepalived/${h.name}/fmc-check-proxy`, content: checkScript(), executable: true },
    { path: `keepalived/${h.name}/keepalived.service.d/fmc.conf`, content: keepalivedDropIn() },
  ]);
}
