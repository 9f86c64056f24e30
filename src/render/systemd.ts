// Small helpers for systemd unit names and files, shared by the Ignition and storage
// renderers. Every value goes through systemdValue(): one line, "%" doubled.
import { systemdValue } from "./quote.js";

/** `systemd-escape --path`: /mnt/longhorn-disk -> mnt-longhorn\x2ddisk */
export function escapePath(path: string): string {
  const trimmed = path.replace(/^\/+|\/+$/g, "").replace(/\/+/g, "/");
  if (trimmed === "") return "-";
  return trimmed
    .split("/")
    .map((seg) =>
      [...seg]
        .map((ch, i) => (/[A-Za-z0-9:_]/.test(ch) || (ch === "." && i > 0) ? ch : `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`))
        .join(""),
    )
    .join("-");
}

export function mountUnitName(path: string): string {
  return `${escapePath(path)}.mount`;
}

export type UnitSections = Record<string, Array<[string, string]>>;

/** Renders [Section] key=value blocks in the order given. */
export function unitFile(sections: UnitSections, comment?: string): string {
  const out: string[] = [];
  if (comment) out.push(`# ${comment}`);
  for (const [name, entries] of Object.entries(sections)) {
    if (out.length) out.push("");
    out.push(`[${name}]`);
    for (const [k, v] of entries) out.push(`${k}=${systemdValue(v)}`);
  }
  return out.join("\n") + "\n";
}
