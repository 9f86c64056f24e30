// Writes a rendered artifact set into an output directory without ever destroying what
// fmc did not write there. A manifest (.fmc-render) lists the files fmc owns; each file
// is written beside its target and renamed into place, files fmc wrote earlier but no
// longer renders are removed, and everything else stays: Terraform's working files
// (state, .terraform/, lock file, tfvars) in each module's directory (terraform/libvirt/,
// terraform/cloudflare/, and terraform/ itself from the single-module layout before them)
// and anything a user added. A file fmc would
// have to overwrite but does not own stops the render with its name. No path may leave
// the output directory: artifact paths are checked, and symlinks inside it are refused.
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmdirSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { z } from "zod";
import type { Artifact } from "./types.js";
import { FmcError } from "../errors.js";
import { parseStored } from "../state/stored.js";
import { readSmallTextFile } from "../files.js";
import { quote } from "../shell.js";

const MARKER = ".fmc-render";
const GITIGNORE = ".gitignore";

/** What Terraform keeps in its working directory: never fmc's to touch. */
const TERRAFORM_FILES = [/^terraform\.tfstate(\.backup|\.d)?$/, /^\.terraform(\.lock\.hcl|\.tfstate\.lock\.info)?$/, /\.tfvars(\.json)?$/, /^crash\.log$/];
/**
 * A Terraform working file (or directory) in a module's directory, terraform/<module>/,
 * or in terraform/ itself, where the single root module of earlier renders kept its state.
 */
const isTerraformWorkingFile = (rel: string) => {
  const parts = rel.split("/");
  if (parts[0] !== "terraform" || parts.length < 2 || parts.length > 3) return false;
  return TERRAFORM_FILES.some((r) => r.test(parts[parts.length - 1]!));
};

/** Lines of out/.gitignore that keep Terraform's state (every Ignition config, the K3s token) and tfvars out of git. */
const TERRAFORM_IGNORES = [
  "# Terraform's state holds every Ignition config (K3s token included); tfvars may hold credentials",
  "/terraform/**/terraform.tfstate*",
  "/terraform/**/.terraform/",
  "/terraform/**/*.tfvars",
  "/terraform/**/*.tfvars.json",
];

const Manifest = z.object({ files: z.array(z.string()) });
const TMP = /^\..+\.fmc-tmp-\d+$/;

/** An artifact path: relative, "/"-separated, plain names, no "." or ".." segments. */
function checkArtifactPath(p: string): void {
  const ok = p.length > 0 && p.length <= 1024 && p.split("/").every((s) => /^[A-Za-z0-9_@\\][A-Za-z0-9._@\\-]{0,254}$/.test(s) || /^\.[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(s));
  if (!ok || p.split("/").some((s) => s === "." || s === "..")) {
    throw new FmcError("RENDER_PATH", `refusing to write ${JSON.stringify(p)}: not a plain relative path inside the output directory`, "this is a bug in a renderer; please report it");
  }
}

export interface WriteResult {
  readonly written: number;
  readonly unchanged: number;
  readonly removed: readonly string[];
  /** Files in the output directory that fmc did not write and left alone. */
  readonly kept: readonly string[];
}

function fsError(e: unknown, what: string, outDir: string): FmcError {
  const err = e as NodeJS.ErrnoException;
  if (err instanceof FmcError) return err;
  switch (err.code) {
    case "ENOTDIR":
    case "EEXIST":
      return new FmcError("OUT_NOT_DIR", `${what}: part of the path ${err.path ?? outDir} is a file, not a directory`, "pick another -o directory");
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return new FmcError("OUT_UNWRITABLE", `${what}: ${err.path ?? outDir} is not writable`, "pick a directory you can write to");
    case "ENOSPC":
      return new FmcError("OUT_FULL", `${what}: no space left on the device of ${outDir}`);
    default:
      return new FmcError("OUT_IO", `${what}: ${err.message}`);
  }
}

/** Every file (and symlink) under dir, relative, "/"-separated; directories Terraform owns are not entered. */
function listFiles(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const abs = join(dir, e.name);
    const rel = relative(base, abs).split(sep).join("/");
    if (e.isDirectory() && !isTerraformWorkingFile(rel)) out.push(...listFiles(abs, base));
    else out.push(rel);
  }
  return out;
}

/** The largest render manifest fmc reads: one line per file, a 1,000-host spec's is well under it. */
const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;

function readManifest(target: string): Set<string> | undefined {
  const file = join(target, MARKER);
  let text: string;
  try {
    // out/ is committed: a shared repository can carry a FIFO or a link to /dev/zero here
    text = readSmallTextFile(file, "render manifest", MAX_MANIFEST_BYTES);
  } catch (e) {
    if (!(e instanceof FmcError)) throw e;
    if (e.code === "FILE_NOT_FOUND") return undefined;
    if (e.code === "FILE_UNREADABLE" || e.code === "FILE_IO") throw e;
    throw new FmcError("OUT_MANIFEST", e.message, `fmc writes it as a small regular file: remove ${quote(file)} only if nothing else in that directory is yours to keep`);
  }
  const parsed = parseStored(text, Manifest, () => new FmcError("OUT_MANIFEST", `${file} is not a manifest fmc wrote`, "remove it only if nothing else in that directory is yours to keep"));
  for (const p of parsed.files) checkArtifactPath(p);
  // a manifest never hands Terraform's files to fmc, whoever wrote it
  return new Set(parsed.files.filter((p) => !isTerraformWorkingFile(p)));
}

/** Whether every directory between target and rel's file is a real directory (no symlink to follow). */
function realDirsUpTo(target: string, rel: string): boolean {
  let cur = target;
  for (const part of rel.split("/").slice(0, -1)) {
    cur = join(cur, part);
    try {
      if (!lstatSync(cur).isDirectory()) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** Without a manifest, only an empty directory or one holding Terraform's files will do; found without walking a big tree. */
function foreignEntries(target: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(target, { withFileTypes: true })) {
    if (e.name === "terraform" && e.isDirectory()) {
      for (const t of readdirSync(join(target, "terraform"), { withFileTypes: true })) {
        const rel = `terraform/${t.name}`;
        if (isTerraformWorkingFile(rel)) continue;
        // a module's directory holding only Terraform's files (a state kept from an earlier -o)
        if (t.isDirectory()) for (const u of readdirSync(join(target, rel))) if (!isTerraformWorkingFile(`${rel}/${u}`)) out.push(`${rel}/${u}`);
        if (!t.isDirectory()) out.push(rel);
      }
    } else out.push(e.name);
    if (out.length > 8) break;
  }
  return out;
}

/** The directory of `rel` under target, created as needed; a symlink on the way is refused. */
function ensureDir(target: string, rel: string): void {
  let cur = target;
  for (const part of rel.split("/").slice(0, -1)) {
    cur = join(cur, part);
    let st;
    try {
      st = lstatSync(cur);
    } catch {
      mkdirSync(cur, { mode: 0o755 });
      continue;
    }
    if (st.isSymbolicLink()) throw new FmcError("OUT_SYMLINK", `${cur} is a symlink; fmc writes only inside the output directory`, "replace the link with a real directory or pick another -o");
    if (!st.isDirectory()) throw new FmcError("OUT_NOT_DIR", `${cur} is a file where fmc needs a directory`, "move it away or pick another -o");
  }
}

const modeOf = (a: Artifact) => (a.secret ? (a.executable ? 0o700 : 0o600) : a.executable ? 0o755 : 0o644);

function writeOne(target: string, rel: string, content: string, mode: number): boolean {
  const file = join(target, rel);
  try {
    const st = lstatSync(file);
    // the size first: a file of another size differs, and is not read (it may be huge)
    if (st.isFile() && (st.mode & 0o777) === mode && st.size === Buffer.byteLength(content) && readFileSync(file, "utf8") === content) return false;
  } catch {
    // absent: write it
  }
  const tmp = join(dirname(file), `.${rel.split("/").pop()}.fmc-tmp-${process.pid}`); // matches TMP
  try {
    writeFileSync(tmp, content, { mode });
    chmodSync(tmp, mode); // the umask must not widen or narrow what we chose
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing to clean
    }
    throw e;
  }
  return true;
}

function manifestText(files: Iterable<string>): string {
  return JSON.stringify({ files: [...files].sort() }, null, 2) + "\n";
}

/**
 * The output directory as writeArtifacts will find it: its manifest (undefined when fmc
 * has never written there), after the refusals that need no artifacts (not a directory;
 * not empty without a manifest). Nothing is created.
 */
function inspectOutDir(outDir: string, target: string): Set<string> | undefined {
  let st;
  try {
    st = statSync(target); // a symlink to a directory is followed and kept
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  if (!st.isDirectory()) throw new FmcError("OUT_NOT_DIR", `${outDir} is a file, not a directory`, "pick another -o directory");
  const manifest = readManifest(target);
  if (!manifest) {
    // fmc has never written here: only an empty directory (or Terraform's own files) will do
    const foreign = foreignEntries(target);
    if (foreign.length) {
      throw new FmcError(
        "OUT_NOT_EMPTY",
        `${outDir} is not empty and fmc has not written there before: ${foreign.slice(0, 8).join(", ")}${foreign.length > 8 ? ", …" : ""}`,
        "pick another -o directory or empty this one; fmc never overwrites files it did not write",
      );
    }
  }
  return manifest;
}

/**
 * Refuses an -o writeArtifacts would refuse, before anything else happens: a render that
 * can't write must not generate the secret store first (-o ., -o /).
 */
export function checkOutDir(outDir: string): void {
  if (outDir.trim() === "") throw new FmcError("USAGE", "the output directory name is empty", "use -o out (or any directory name)");
  const target = resolve(outDir);
  try {
    inspectOutDir(outDir, target);
  } catch (e) {
    throw fsError(e, `checking ${outDir}`, target);
  }
}

export function writeArtifacts(outDir: string, artifacts: readonly Artifact[]): WriteResult {
  checkOutDir(outDir);
  for (const a of artifacts) checkArtifactPath(a.path);
  const target = resolve(outDir);
  try {
    if (!existsSync(target)) mkdirSync(target, { recursive: true, mode: 0o755 });
    const manifest = inspectOutDir(outDir, target);
    const owned = manifest ?? new Set<string>();
    const wanted = new Map(artifacts.map((a) => [a.path, a] as const));
    // a temp file left by an interrupted render of fmc's own is removed
    const existing = listFiles(target).filter((rel) => {
      if (!manifest || !TMP.test(rel.split("/").pop()!) || !realDirsUpTo(target, rel)) return true;
      unlinkSync(join(target, rel));
      return false;
    });
    const isOurs = (rel: string) => owned.has(rel) || rel === MARKER || (rel === GITIGNORE && owned.size > 0);
    // a file fmc must write over but does not own: stop before anything changes
    const collisions = existing.filter((rel) => !isOurs(rel) && (wanted.has(rel) || rel === GITIGNORE || rel === MARKER));
    const blocking = [...collisions, ...[...wanted.keys()].filter((rel) => existing.some((e) => rel.startsWith(`${e}/`)) && !owned.has(rel))];
    if (blocking.length) {
      throw new FmcError(
        "OUT_NOT_OURS",
        `${outDir} holds files fmc did not write where it needs to write: ${blocking.slice(0, 8).join(", ")}${blocking.length > 8 ? `, … (${blocking.length})` : ""}`,
        "move them away, or render into another -o directory; fmc never overwrites files it did not write",
      );
    }
    for (const rel of wanted.keys()) {
      if (existing.includes(rel) && lstatSync(join(target, rel)).isSymbolicLink()) {
        throw new FmcError("OUT_SYMLINK", `${join(outDir, rel)} is a symlink; fmc writes only inside the output directory`, "remove the link");
      }
    }

    // Claim every path first: if the render stops half-way, the next one still knows
    // which files are fmc's (and a re-run finishes the job).
    writeOne(target, MARKER, manifestText(new Set([...owned, ...wanted.keys()])), 0o644);
    let written = 0;
    let unchanged = 0;
    for (const a of artifacts) {
      ensureDir(target, a.path);
      if (writeOne(target, a.path, a.content, modeOf(a))) written++;
      else unchanged++;
    }
    const secretPaths = artifacts.filter((a) => a.secret).map((a) => `/${a.path}`);
    const terraformIgnores = artifacts.some((a) => a.path.startsWith("terraform/")) ? TERRAFORM_IGNORES : [];
    writeOne(target, GITIGNORE, ["# Rendered by fmc. These files hold secrets (mode 0600): never commit them.", ...secretPaths, ...terraformIgnores, ""].join("\n"), 0o644);

    // Files fmc wrote before and no longer renders; their directories if now empty.
    const removed: string[] = [];
    for (const rel of owned) {
      if (wanted.has(rel)) continue;
      const abs = join(target, rel);
      // never through a symlinked directory: that file is not inside -o
      if (!realDirsUpTo(target, rel)) continue;
      try {
        if (!lstatSync(abs).isFile()) continue;
        unlinkSync(abs);
        removed.push(rel);
      } catch {
        continue; // already gone
      }
      for (let d = dirname(abs); d.startsWith(target + sep); d = dirname(d)) {
        try {
          rmdirSync(d); // only succeeds when empty
        } catch {
          break;
        }
      }
    }
    writeOne(target, MARKER, manifestText(wanted.keys()), 0o644);
    const kept = existing.filter((rel) => !isOurs(rel) && !wanted.has(rel));
    return { written, unchanged, removed: removed.sort(), kept };
  } catch (e) {
    throw fsError(e, `writing into ${outDir}`, target);
  }
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
