// The LAN firewall: an nftables ruleset for a Linux gateway (default-drop between
// subnets, port forwards from the tunnel, NAT to the WAN) and the same policy as a
// pfSense fragment (aliases, NAT, filter rules) to import on a pfSense box.
import type { Artifact, RenderContext } from "./types.js";
import { lines, HEADER_TEXT } from "./types.js";
import { nftTable } from "./nft.js";
import { nftString, xmlComment, xmlText } from "./quote.js";

interface Rule {
  readonly description: string;
  readonly from: string;
  readonly to: string;
  readonly protocol: "tcp" | "udp" | "icmp" | "any";
  readonly ports: readonly number[];
}

function resolved(ctx: RenderContext, ref: string): string {
  const r = ctx.topo.resolveEndpoint(ref);
  if (r === undefined) throw new Error(`internal: firewall endpoint ${ref} passed validation`);
  return r;
}

function nftMatch(ctx: RenderContext, r: Rule): string {
  const parts: string[] = [];
  const from = resolved(ctx, r.from);
  const to = resolved(ctx, r.to);
  if (from !== "any") parts.push(`ip saddr ${from}`);
  if (to !== "any") parts.push(`ip daddr ${to}`);
  if (r.protocol === "icmp") parts.push("ip protocol icmp");
  else if (r.protocol !== "any") {
    parts.push(r.ports.length ? `${r.protocol} dport { ${r.ports.join(", ")} }` : `meta l4proto ${r.protocol}`);
  }
  return `${parts.join(" ")} accept comment ${nftString(r.description)}`;
}

export function firewallNftables(ctx: RenderContext): string {
  const fw = ctx.spec.firewall!;
  const wgIf = ctx.spec.wireguard?.interface;
  const lan = ctx.spec.network.cidr;
  const forwards = fw.portForwards.map((f) => ({ ...f, target: resolved(ctx, f.to).replace("/32", "") }));
  return nftTable("fmc_firewall", {
    input: [
      `ip saddr ${lan} tcp dport 22 accept comment "SSH from the private network"`,
      ...(wgIf && ctx.spec.wireguard ? [`iifname ${nftString(fw.wanInterface)} udp dport ${ctx.spec.wireguard.port} accept comment "WireGuard"`] : []),
    ],
    forward: [
      'ct status dnat accept comment "port forwards below"',
      ...fw.rules.map((r) => nftMatch(ctx, r)),
      `ip saddr ${lan} oifname ${nftString(fw.wanInterface)} accept comment "outbound to the internet"`,
    ],
    prerouting: forwards.map(
      (f) => `${wgIf ? `iifname ${nftString(wgIf)} ` : ""}${f.protocol} dport ${f.port} dnat ip to ${f.target}${f.toPort ? `:${f.toPort}` : ""} comment ${nftString(f.description)}`,
    ),
    postrouting: [`ip saddr ${lan} oifname ${nftString(fw.wanInterface)} masquerade`],
  });
}

const esc = xmlText;
/** An interface name in an XML comment, which can't hold "--": named by its setting then. */
const commentable = (name: string) => (name.includes("--") || name.endsWith("-") ? "(see the spec's firewall interfaces)" : xmlComment(name));

/** pfSense config.xml sections; import with Diagnostics > Backup & Restore per area. */
export function pfsenseFragment(ctx: RenderContext): string {
  const fw = ctx.spec.firewall!;
  const alias = (ref: string) => (ref === "any" ? undefined : `FMC_${ref.replace(/[^A-Za-z0-9_]/g, "_")}`);
  const refs = [...new Set(fw.rules.flatMap((r) => [r.from, r.to]).concat(fw.portForwards.map((f) => f.to)))].filter((r) => r !== "any").sort();
  const endpoint = (ref: string) => (ref === "any" ? "<any/>" : `<address>${alias(ref)}</address>`);
  const wgIf = ctx.spec.wireguard ? "opt1" : "wan";
  return lines(
    '<?xml version="1.0"?>',
    `<!-- ${HEADER_TEXT} -->`,
    `<!-- Interface names: lan = ${"eth1…ethN, one per LAN subnet"}, wan = ${commentable(fw.wanInterface)}, opt1 = the WireGuard tunnel. -->`,
    "<pfsense>",
    "  <aliases>",
    ...refs.flatMap((ref) => [
      "    <alias>",
      `      <name>${alias(ref)}</name>`,
      `      <type>${resolved(ctx, ref).endsWith("/32") ? "host" : "network"}</type>`,
      `      <address>${resolved(ctx, ref).replace(/\/32$/, "")}</address>`,
      `      <descr>${esc(ref)}</descr>`,
      "    </alias>",
    ]),
    ...fw.rules.flatMap((r, i) =>
      r.ports.length > 1
        ? ["    <alias>", `      <name>FMC_rule${i}_ports</name>`, "      <type>port</type>", `      <address>${r.ports.join(" ")}</address>`, `      <descr>${esc(r.description)}</descr>`, "    </alias>"]
        : [],
    ),
    "  </aliases>",
    "  <nat>",
    ...fw.portForwards.flatMap((f) => [
      "    <rule>",
      `      <interface>${wgIf}</interface>`,
      "      <ipprotocol>inet</ipprotocol>",
      `      <protocol>${f.protocol}</protocol>`,
      "      <source><any/></source>",
      `      <destination><network>${wgIf}ip</network><port>${f.port}</port></destination>`,
      `      <target>${alias(f.to)}</target>`,
      `      <local-port>${f.toPort ?? f.port}</local-port>`,
      `      <descr>${esc(f.description)}</descr>`,
      "      <associated-rule-id>pass</associated-rule-id>",
      "    </rule>",
    ]),
    "  </nat>",
    "  <filter>",
    ...fw.rules.flatMap((r, i) => [
      "    <rule>",
      "      <type>pass</type>",
      "      <interface>lan</interface>",
      "      <ipprotocol>inet</ipprotocol>",
      r.protocol !== "any" && `      <protocol>${r.protocol}</protocol>`,
      `      <source>${endpoint(r.from)}</source>`,
      `      <destination>${endpoint(r.to)}${r.ports.length > 1 ? `<port>FMC_rule${i}_ports</port>` : r.ports.length ? `<port>${r.ports[0]}</port>` : ""}</destination>`,
      `      <descr>${esc(r.description)}</descr>`,
      "    </rule>",
    ].filter((x): x is string => typeof x === "string")),
    "  </filter>",
    "</pfsense>",
  );
}

export function renderFirewall(ctx: RenderContext): Artifact[] {
  if (!ctx.spec.firewall) return [];
  return [
    { path: "firewall/nftables.nft", content: firewallNftables(ctx) },
    { path: "firewall/pfsense.xml", content: pfsenseFragment(ctx) },
  ];
}
