// A topology diagram (SVG) of the spec: the traffic path from the internet down to the
// K3s nodes, one row per tier, every host with its address, side services at the right.
import type { Host, Role } from "../model/schema.js";
import type { Artifact, ClusterContext } from "./types.js";
import { xmlText } from "./quote.js";

interface Box {
  readonly title: string;
  readonly detail: string;
  readonly kind: "external" | "host" | "vip";
}

const BOX_W = 170;
const BOX_H = 46;
const SIDE_W = 240;
const GAP = 18;
const ROW_H = 92;
const COLORS = { external: "#e8eef7", host: "#ffffff", vip: "#fff4d6" } as const;

const esc = xmlText;
/** A host in its tier's row; roles it has besides the row's are named after its address (storage1: "10.17.4.27 (storage)"). */
const hostBox = (row: readonly Role[]) => (h: Host): Box => {
  const other = h.roles.filter((r) => !row.includes(r));
  return { title: h.name, detail: other.length ? `${h.address} (${other.join(", ")})` : h.address, kind: "host" };
};
/** Roles that put a host in a main row; the side column holds the other hosts (identity, database, storage), each once. */
const ROW_ROLES: readonly Role[] = ["gateway", "firewall", "edge", "loadbalancer", "k3s-server", "k3s-agent"];

/** The main rows, top down; every host once, in the first row of a role it has (its other roles named in its box). */
export function diagramRows(ctx: ClusterContext): Array<{ label: string; boxes: Box[] }> {
  const { spec, topo } = ctx;
  const placed = new Set<string>();
  const once = (hosts: readonly Host[]) =>
    hosts.filter((h) => {
      if (placed.has(h.name)) return false;
      placed.add(h.name);
      return true;
    });
  const vipBoxes = (role: "loadbalancer" | "edge") =>
    spec.vips.filter((v) => v.role === role).map((v): Box => ({ title: `VIP ${v.name}`, detail: v.address, kind: "vip" }));
  const rows = [
    { label: "internet", boxes: [{ title: "users", detail: "HTTPS", kind: "external" } as Box, ...(spec.cloudflare ? [{ title: "Cloudflare", detail: spec.cloudflare.zone, kind: "external" } as Box] : [])] },
    { label: "gateway", boxes: once(topo.withRole("gateway")).map((h) => ({ title: h.name, detail: `${h.publicAddress ?? "?"} / wg ${h.address}`, kind: "host" as const })) },
    { label: "firewall", boxes: once(topo.withRole("firewall")).map(hostBox(["firewall"])) },
    { label: "edge", boxes: [...vipBoxes("edge"), ...once(topo.withRole("edge")).map(hostBox(["edge"]))] },
    { label: "load balancers", boxes: [...vipBoxes("loadbalancer"), ...once(topo.withRole("loadbalancer")).map(hostBox(["loadbalancer"]))] },
    { label: "k3s servers", boxes: once(topo.servers).map(hostBox(["k3s-server"])) },
    { label: "k3s agents", boxes: once(topo.agents).map(hostBox(["k3s-agent"])) },
  ];
  return rows.filter((r) => r.boxes.length > 0);
}

export function diagramSvg(ctx: ClusterContext): string {
  const rows = diagramRows(ctx);
  // a host already in a row (storage1 is a K3s agent too) is not drawn again at the side
  const side = ctx.spec.hosts.filter((h) => !h.roles.some((r) => ROW_ROLES.includes(r)) && h.roles.some((r) => r === "identity" || r === "database" || r === "storage"));
  const leftW = 120;
  const mainW = Math.max(...rows.map((r) => r.boxes.length)) * (BOX_W + GAP);
  const sideX = leftW + mainW + 40;
  const width = sideX + (side.length ? SIDE_W + 40 : 0);
  const height = rows.length * ROW_H + 60;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(ctx.spec.name)} topology</title>`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    `<rect width="${width}" height="${height}" fill="#fafafa"/>`,
    `<text x="16" y="28" font-size="16" font-weight="bold">${esc(ctx.spec.name)} — ${esc(ctx.spec.network.cidr)}</text>`,
  ];
  const box = (x: number, y: number, b: Box, w = BOX_W) => {
    out.push(
      `<g><rect x="${x}" y="${y}" width="${w}" height="${BOX_H}" rx="6" fill="${COLORS[b.kind]}" stroke="#667"${b.kind === "vip" ? ' stroke-dasharray="4 3"' : ""}/>`,
      `<text x="${x + w / 2}" y="${y + 19}" text-anchor="middle" font-weight="bold">${esc(b.title)}</text>`,
      `<text x="${x + w / 2}" y="${y + 36}" text-anchor="middle" fill="#333">${esc(b.detail)}</text></g>`,
    );
  };
  rows.forEach((row, i) => {
    const y = 50 + i * ROW_H;
    out.push(`<text x="16" y="${y + BOX_H / 2 + 4}" fill="#555">${esc(row.label)}</text>`);
    row.boxes.forEach((b, j) => box(leftW + j * (BOX_W + GAP), y, b));
    if (i > 0) {
      const x = leftW + BOX_W / 2;
      out.push(`<line x1="${x}" y1="${y - ROW_H + BOX_H}" x2="${x}" y2="${y - 2}" stroke="#555" marker-end="url(#arrow)"/>`);
    }
  });
  side.forEach((h, i) => box(sideX, 50 + i * ROW_H, { title: h.name, detail: `${h.address} (${h.roles.join(", ")})`, kind: "host" }, SIDE_W));
  out.push("</svg>");
  return out.join("\n") + "\n";
}

export function renderDiagram(ctx: ClusterContext): Artifact[] {
  return [{ path: "topology.svg", content: diagramSvg(ctx) }];
}
