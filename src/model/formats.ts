// Strict formats for every spec string that reaches a path, a script or a config file.
// A value either matches one of these shapes or the spec is rejected: renderers quote
// for their target as well (src/render/quote.ts), but nothing relies on that alone.
import { posix } from "node:path";
import { z } from "zod";

/** Characters no spec value may contain: C0/C1 controls, DEL, line/paragraph separators, bidi overrides, BOM. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/;

/** The first control character of a string, as U+XXXX, or undefined. */
export function controlChar(s: string): string | undefined {
  const m = CONTROL.exec(s);
  return m ? `U+${m[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}` : undefined;
}

const LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";

/** A lowercase DNS label: host, VIP, subnet and namespace names. */
export const dnsLabel = z.string().regex(new RegExp(`^${LABEL}$`), "must be a lowercase DNS label (a-z, 0-9, - inside; at most 63)");

/** A lowercase DNS name with at least two labels and an alphabetic top-level label. */
export const domainName = z
  .string()
  .regex(new RegExp(`^(${LABEL}\\.)+[a-z]{2,63}$`), "must be a lowercase DNS domain such as fmc.lan")
  .max(253);

/** A host name (one or more labels) or an IPv4 address: NTP servers, endpoints. */
export const hostOrIp = z
  .string()
  .regex(new RegExp(`^(${LABEL})(\\.${LABEL})*$`), "must be a lowercase host name or an IPv4 address")
  .max(253);

export const ipv4 = z
  .string()
  .regex(/^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/, "must be an IPv4 address such as 10.17.4.21");

/** IPv4 CIDR shape; host bits and ranges are checked with the network logic. */
export const cidr = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, "must be an IPv4 CIDR such as 10.17.4.0/24");

/** A Linux network interface name: at most 15 bytes, no "/", no whitespace (IFNAMSIZ). wg-quick's own rule is the same character set. */
export const ifname = z
  .string()
  .regex(/^[A-Za-z0-9_=+.-]{1,15}$/, "must be a network interface name: 1-15 of A-Z a-z 0-9 _ = + . -")
  .refine((s) => s !== "." && s !== "..", 'must not be "." or ".."');

/** A POSIX login name (useradd's default rule). */
export const userName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a user name: lowercase letters, digits, _ and -, starting with a letter or _ (at most 32)");

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** An absolute, normalised path: /a/b, no //, no . or .. segments, no trailing /, only A-Z a-z 0-9 . _ - in names. */
export const absPath = z.string().superRefine((p, ctx) => {
  const why = p.length > 255 ? "is longer than 255 characters" : pathProblem(p);
  if (why) ctx.addIssue({ code: "custom", message: why });
});

export function pathProblem(p: string): string | undefined {
  if (!p.startsWith("/")) return `"${p}" is not an absolute path`;
  if (p === "/") return "must not be the root directory";
  if (posix.normalize(p) !== p || p.endsWith("/")) return `"${p}" is not normalised (write ${posix.normalize(p).replace(/\/$/, "") || "/"})`;
  const bad = p.slice(1).split("/").find((s) => !SEGMENT.test(s));
  if (bad !== undefined) return `path segment "${bad}" may only hold A-Z a-z 0-9 . _ - (and not start with . or -)`;
  return undefined;
}

/** A block device under /dev. */
export const devicePath = absPath.refine((p) => p.startsWith("/dev/") && p.split("/").length >= 3, "must be a device under /dev, such as /dev/vdb");

/** LVM volume group and logical volume names (lvm(8): A-Z a-z 0-9 + _ . -, not starting with -). */
export const lvmName = z.string().regex(/^[A-Za-z0-9_+][A-Za-z0-9_+.-]{0,62}$/, "must be an LVM name: A-Z a-z 0-9 + _ . - (not starting with -)");

/** Sizes for lvcreate: -L 20G or -l 100%FREE, bounded. */
export const lvmSize = z
  .string()
  .regex(/^([1-9]\d{0,5}[KMGT]|([1-9]\d?|100)%FREE)$/, 'must look like "20G", "512M" or "100%FREE" (at most 6 digits; 1-100 %FREE)');

/** Kubernetes quantities of storage used for PVCs. */
export const storageQuantity = z.string().regex(/^[1-9]\d{0,5}(Mi|Gi|Ti)$/, 'must look like "20Gi" (Mi, Gi or Ti, at most 6 digits)');

/** Chart versions and other dotted versions: 1.9.1, v3.5, 16. */
export const semver = z.string().regex(/^v?\d{1,4}\.\d{1,4}\.\d{1,6}([-+][0-9A-Za-z.-]{1,40})?$/, 'must be a version such as "1.9.1" or "4.11.0-rc.1"');

export const shortVersion = z.string().regex(/^v\d{1,3}(\.\d{1,3}){0,2}$/, 'must be a version such as "v3.5"');
export const postgresVersion = z.string().regex(/^\d{1,2}$/, 'must be a PostgreSQL major version such as "16"');

/** SQL identifiers that need no quoting: database names. */
export const sqlIdentifier = z.string().regex(/^[a-z][a-z0-9_]{0,62}$/, "must be a lowercase SQL name: a-z, 0-9 and _, starting with a letter (at most 63)");

/** Kerberos realm: the upper-cased DNS domain, by convention. */
export const realm = z.string().regex(/^[A-Z0-9]([A-Z0-9-]{0,61}[A-Z0-9])?(\.[A-Z0-9]([A-Z0-9-]{0,61}[A-Z0-9])?)+$/, "must be an upper-case realm such as MICROCLOUD.LAN");

/** Chart repository: https:// or oci:// with a host and a plain path. */
export const httpsUrl = z
  .string()
  .regex(/^https:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~%+-]+)+$/, "must be an https:// URL with a plain path")
  .max(512);

export const repoUrl = z
  .string()
  .regex(/^(https|oci):\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~%+-]+)*\/?$/, "must be an https:// or oci:// URL with a plain path")
  .max(512);

/** libvirt connection URIs (qemu driver). */
export const libvirtUri = z
  .string()
  .regex(/^qemu(\+(ssh|tcp|tls|unix))?:\/\/([A-Za-z0-9._-]+@)?[A-Za-z0-9._-]*(:\d{1,5})?\/(system|session)(\?[A-Za-z0-9=&._\/-]*)?$/, "must be a libvirt qemu URI such as qemu:///system or qemu+ssh://user@host/system")
  .max(255);

/** Free text that ends up in comments and descriptions (nft, pfSense, units). */
export const description = z
  .string()
  .regex(/^[^"\\`$]*$/, 'may not contain ", \\, ` or $ (it is written into rule comments)')
  .min(1)
  .max(100)
  .refine((s) => Buffer.byteLength(s) <= 128, "is longer than 128 bytes (an nftables comment's limit)");

/** Kubernetes label keys ([prefix/]name) and values. */
const K8S_NAME = "[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?";
export const labelKey = z
  .string()
  .regex(new RegExp(`^((${LABEL})(\\.${LABEL})*/)?${K8S_NAME}$`), "must be a Kubernetes label key: [prefix/]name")
  .max(317);
export const labelValue = z.string().regex(new RegExp(`^(${K8S_NAME})?$`), "must be a Kubernetes label value: at most 63 of A-Z a-z 0-9 . _ -, alphanumeric at both ends");

/** A node taint: key[=value]:Effect. */
export const taint = z
  .string()
  .regex(new RegExp(`^((${LABEL})(\\.${LABEL})*/)?${K8S_NAME}(=(${K8S_NAME})?)?:(NoSchedule|PreferNoSchedule|NoExecute)$`), "must be a taint: key[=value]:NoSchedule|PreferNoSchedule|NoExecute")
  .max(400);

/** Firewall rule endpoints: a name, a CIDR, an address, or any. */
export const endpointRef = z.string().regex(/^(any|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?|\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?)$/, "must be a subnet, host or VIP name, an IPv4 address or CIDR, or any");

/** Cloudflare record names relative to the zone: "@", "www", "a.b", "*". */
export const recordName = z
  .string()
  .regex(new RegExp(`^(@|\\*|(\\*\\.)?${LABEL}(\\.${LABEL})*)$`), 'must be "@", "*" or a lowercase name relative to the zone')
  .max(253);

/** An SSH public key line or a path to a .pub file: checked in detail by checks.ts. */
export const sshKeyEntry = z.string().min(1).max(16384);

/** NFS export options fmc knows the meaning of (exports(5)); anything else is refused. */
const NFS_FLAGS = [
  "rw", "ro", "sync", "async", "secure", "insecure", "wdelay", "no_wdelay", "hide", "nohide", "crossmnt",
  "subtree_check", "no_subtree_check", "insecure_locks", "secure_locks", "root_squash", "no_root_squash",
  "all_squash", "no_all_squash", "acl", "no_acl",
] as const;
export const nfsOption = z
  .string()
  .regex(new RegExp(`^(${NFS_FLAGS.join("|")}|sec=(sys|krb5|krb5i|krb5p)(:(sys|krb5|krb5i|krb5p))*|anonuid=\\d{1,10}|anongid=\\d{1,10}|fsid=(\\d{1,10}|root|[0-9a-f-]{32,36}))$`), `must be an NFS export option: ${NFS_FLAGS.join(", ")}, sec=…, anonuid=N, anongid=N or fsid=…`);
