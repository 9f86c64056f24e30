// Quoting for each target syntax, in one place. The spec's formats already keep hostile
// values out (src/model/formats.ts); these functions are the second line: every value a
// renderer puts into a script or config goes through the quoting of that target, and a
// value the target cannot represent safely stops the render instead of being pasted in.
import { controlChar } from "../model/formats.js";
import { quote as shellQuote } from "../shell.js";
import { FmcError } from "../errors.js";

function refuse(target: string, value: string, why: string): never {
  throw new FmcError("RENDER_UNSAFE", `refusing to write ${JSON.stringify(value.slice(0, 80))} into ${target}: ${why}`, "this value passed validation but is unsafe here; please report it");
}

function noControl(target: string, value: string): void {
  const c = controlChar(value);
  if (c) refuse(target, value, `it contains the control character ${c}`);
}

/** A POSIX shell word: single-quoted unless plainly safe. */
export function sh(value: string): string {
  noControl("a shell script", value);
  return shellQuote(value);
}

/**
 * A value in a systemd unit file: one line, and "%" doubled so specifiers are not
 * expanded. Paths in What=/Where= must not need C-style escapes, so spaces and
 * backslashes are refused there (systemd.unit(5), "Quoting").
 */
export function systemdValue(value: string): string {
  noControl("a systemd unit", value);
  return value.replace(/%/g, "%%");
}

export function systemdPath(value: string): string {
  if (/[\s\\"']/.test(value)) refuse("a systemd unit path", value, "it needs quoting that systemd does not apply to this setting");
  return systemdValue(value);
}

/** A double-quoted nftables string (comments); nft has no escape for the quote itself. */
export function nftString(value: string): string {
  noControl("an nftables ruleset", value);
  if (/["\\]/.test(value)) refuse("an nftables ruleset", value, 'nft strings cannot hold " or \\');
  if (Buffer.byteLength(value) > 128) refuse("an nftables comment", value, "comments are limited to 128 bytes");
  return `"${value}"`;
}

/** A bare word in keepalived.conf, haproxy.cfg, a wg-quick file or an exports line: no spaces, quotes or comment starts. */
export function configWord(target: string, value: string): string {
  noControl(target, value);
  if (value === "" || /[\s"'#!{};\\]/.test(value)) refuse(target, value, "it is not a single plain word");
  return value;
}

/** A value after "Key = " in a wg-quick file: one line, no comment character. */
export function wgValue(value: string): string {
  noControl("a WireGuard config", value);
  if (value.includes("#") || value !== value.trim()) refuse("a WireGuard config", value, "wg-quick would cut it at # or trim it");
  return value;
}

/** Text or an attribute value in XML. */
export function xmlText(value: string): string {
  noControl("an XML document", value);
  return value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

/** Text inside an XML comment, where "--" is not allowed. */
export function xmlComment(value: string): string {
  if (value.includes("--") || value.endsWith("-")) refuse("an XML comment", value, 'comments cannot hold "--"');
  return xmlText(value);
}

/** A literal string in Terraform JSON: "${" and "%{" would start an interpolation or a directive. */
export function tfString(value: string): string {
  noControl("Terraform JSON", value);
  return value.replace(/\$\{/g, "$${").replace(/%\{/g, "%%{");
}

/** One file-name component taken from the spec (an interface name in a path): no "/", no "." or "..". */
export function pathPart(value: string): string {
  noControl("a file name", value);
  if (value === "" || value === "." || value === ".." || value.includes("/") || value.includes("\\")) refuse("a file name", value, "it would leave its directory");
  return value;
}

/** A name in a DNS zone file: labels of letters, digits, - and _, or "@". */
export function zoneName(value: string): string {
  if (!/^(@|[A-Za-z0-9_*]([A-Za-z0-9_-]*[A-Za-z0-9])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9])?)*\.?)$/.test(value)) refuse("a DNS zone file", value, "it is not a DNS name");
  return value;
}
