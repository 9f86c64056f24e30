// IPv4 arithmetic for validation and rendering. Addresses are unsigned 32-bit numbers.

export interface Cidr {
  readonly network: number;
  readonly prefix: number;
  readonly text: string;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function parseIp(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** The network "a.b.c.d/n" names, host bits cleared; undefined for bad syntax. */
export function networkOf(text: string): Cidr | undefined {
  const [ip, len, extra] = text.split("/");
  if (ip === undefined || len === undefined || extra !== undefined || !/^\d{1,2}$/.test(len)) return undefined;
  const addr = parseIp(ip);
  const prefix = Number(len);
  if (addr === undefined || prefix > 32) return undefined;
  return { network: (addr & mask(prefix)) >>> 0, prefix, text };
}

/** Parses "a.b.c.d/n"; returns undefined for bad syntax, a string for host bits set. */
export function parseCidr(text: string): Cidr | string | undefined {
  const c = networkOf(text);
  if (c === undefined) return undefined;
  if (c.network !== parseIp(text.split("/")[0]!)) return `host bits are set; did you mean ${formatIp(c.network)}/${c.prefix}?`;
  return c;
}

export function contains(cidr: Cidr, ip: number): boolean {
  return ((ip & mask(cidr.prefix)) >>> 0) === cidr.network;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.network & mask(p)) >>> 0) === ((b.network & mask(p)) >>> 0);
}

export function isInside(inner: Cidr, outer: Cidr): boolean {
  return inner.prefix >= outer.prefix && contains(outer, inner.network);
}

export function broadcast(cidr: Cidr): number {
  return (cidr.network | ~mask(cidr.prefix)) >>> 0;
}

/** Strict parse for code paths that run after validation. */
export function cidrOf(text: string): Cidr {
  const c = parseCidr(text);
  if (typeof c !== "object") throw new Error(`internal: invalid CIDR ${text} passed validation`);
  return c;
}

export function ipOf(text: string): number {
  const ip = parseIp(text);
  if (ip === undefined) throw new Error(`internal: invalid address ${text} passed validation`);
  return ip;
}

/** Reverse-DNS owner name of an address inside a /16 zone, e.g. "27.4" for 10.17.4.27. */
export function reverseLabel(ip: number, zonePrefix: number): string {
  const octets = [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255];
  return octets.slice(zonePrefix / 8).reverse().join(".");
}
