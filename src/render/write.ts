// Writes a rendered artifact set as a whole: everything goes to a temporary directory
// next to the target, then replaces it with two renames, so a failure never leaves a
// half-written output. Files with secrets get 0600 and are listed in .gitignore.
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Artifact } from "./types.js";
import { FmcError } from "../errors.js";

export const MARKER = ".fmc-render";

export function writeArtifacts(outDir: string, artifacts: readonly Artifact[]): void {
  const target = resolve(outDir);
  if (existsSync(target)) {
    const entries = readdirSync(target);
    if (entries.length > 0 && !entries.includes(MARKER)) {
      throw new FmcError("OUT_NOT_EMPTY", `${outDir} exists, is not empty and was not written by fmc`, "pick another -o directory or empty this one");
    }
  }
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${process.pid}`;
  const old = `${target}.old-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    mkdirSync(tmp, { mode: 0o755 });
    for (const a of artifacts) {
      const file = join(tmp, a.path);
      mkdirSync(dirname(file), { recursive: true });
      const mode = a.secret ? (a.executable ? 0o700 : 0o600) : a.executable ? 0o755 : 0o644;
      writeFileSync(file, a.content, { mode });
      chmodSync(file, mode); // the umask must not widen or narrow what we chose
    }
    const secretPaths = artifacts.filter((a) => a.secret).map((a) => `/${a.path}`);
    writeFileSync(
      join(tmp, ".gitignore"),
      ["# Rendered by fmc. These files hold secrets (mode 0600): never commit them.", ...secretPaths, ""].join("\n"),
    );
    writeFileSync(join(tmp, MARKER), JSON.stringify({ files: artifacts.map((a) => a.path) }, null, 2) + "\n");
    if (existsSync(target)) renameSync(target, old);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(old) && !existsSync(target)) renameSync(old, target);
    throw e;
  }
  rmSync(old, { recursive: true, force: true });
}

/** A short tree: one line per top-level directory with its file count. */
export function summarize(artifacts: readonly Artifact[]): string[] {
  const groups = new Map<string, { files: number; secret: number }>();
  for (const a of artifacts) {
    const top = a.path.includes("/") ? `${a.path.split("/")[0]}/` : a.path;
    const g = groups.get(top) ?? { files: 0, secret: 0 };
    g.files++;
    if (a.secret) g.secret++;
    groups.set(top, g);
  }
  const entries = [...groups];
  return entries.map(([name, g], i) => {
    const branch = i === entries.length - 1 ? "└──" : "├──";
    const count = name.endsWith("/") ? ` ${g.files} file${g.files === 1 ? "" : "s"}` : "";
    const secret = g.secret ? ` (${g.secret} with secrets, 0600)` : "";
    return `${branch} ${name}${count}${secret}`;
  });
}
