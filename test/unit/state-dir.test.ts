// The state directory is fmc's, or fmc refuses it (issue 22): --state on a directory that
// fmc neither created nor marked as its own (a 1777 shared one, /tmp) is refused before its
// mode changes or anything is written into it, and a symlinked .fmc (one a repository can
// carry) is refused before the link is followed. Real directories in temporary ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openStateDir } from "../../src/state/dir.js";
import { loadOrCreateSecrets, requiredSecrets } from "../../src/state/secrets.js";
import { FmcError } from "../../src/errors.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { specFrom, tempDir } from "../helpers.js";

const modeOf = (p: string) => statSync(p).mode & 0o7777;
const refused = (code: string, ...parts: string[]) => (e: unknown) => {
  assert.ok(e instanceof FmcError, String(e));
  assert.equal(e.code, code, e.message);
  for (const p of parts) assert.ok(`${e.message}\n${e.hint}`.includes(p), `${p} in: ${e.message} / ${e.hint}`);
  return true;
};

test("--state on a shared 1777 directory that is not fmc's is refused; its mode and contents stay as they were", (t) => {
  const shared = join(tempDir(t), "shared");
  mkdirSync(shared);
  chmodSync(shared, 0o1777);
  writeFileSync(join(shared, "someone-elses"), "x");
  assert.throws(() => openStateDir(shared), refused("STATE_NOT_FMC", shared));
  assert.equal(modeOf(shared), 0o1777, "sticky and world bits kept");
  assert.deepEqual(readdirSync(shared), ["someone-elses"], "nothing written");
  // the secret store refuses through the same door, before any secret is generated
  assert.throws(() => loadOrCreateSecrets({ path: shared }, requiredSecrets(specFrom(SEED_YAML)), () => {}), refused("STATE_NOT_FMC"));
  assert.deepEqual(readdirSync(shared), ["someone-elses"]);
});

test("--state on a directory holding files, none of them fmc's marker, is refused with a hint naming a fresh directory", (t) => {
  const mine = tempDir(t);
  writeFileSync(join(mine, "notes.txt"), "mine");
  chmodSync(mine, 0o755);
  assert.throws(() => openStateDir(mine), refused("STATE_NOT_FMC", mine, "--state"));
  assert.equal(modeOf(mine), 0o755);
});

test("a missing --state directory is created 0700 with fmc's marker, and is fmc's from then on", (t) => {
  const state = join(tempDir(t), "a", "state");
  openStateDir(state);
  assert.equal(modeOf(state), 0o700);
  assert.match(readFileSync(join(state, ".gitignore"), "utf8"), /^# fmc state/);
  writeFileSync(join(state, "secrets.json"), "{}");
  chmodSync(state, 0o755);
  openStateDir(state); // marked: fmc's, secured again
  assert.equal(modeOf(state), 0o700);
});

test("an empty directory only this user can write (mktemp -d) is taken as a new state directory", (t) => {
  const fresh = tempDir(t);
  openStateDir(fresh);
  assert.equal(modeOf(fresh), 0o700);
  assert.ok(existsSync(join(fresh, ".gitignore")));
});

test("an empty directory others can write to is not taken", (t) => {
  const open = join(tempDir(t), "open");
  mkdirSync(open);
  chmodSync(open, 0o777);
  assert.throws(() => openStateDir(open), refused("STATE_NOT_FMC", open));
  assert.equal(modeOf(open), 0o777);
  assert.deepEqual(readdirSync(open), []);
});

test("a marker another user planted does not make a directory fmc's", (t) => {
  if (process.getuid?.() !== 0) return void t.skip("runs as root to own the marker as another user");
  const shared = join(tempDir(t), "shared");
  mkdirSync(shared);
  chmodSync(shared, 0o1777);
  writeFileSync(join(shared, ".gitignore"), "# fmc state: secrets and locks. Never commit.\n*\n");
  chownSync(join(shared, ".gitignore"), 65534, 65534); // the directory is root's, the marker nobody's
  assert.throws(() => openStateDir(shared), refused("STATE_NOT_FMC", shared));
  assert.equal(modeOf(shared), 0o1777);
});

test("the default .fmc next to the spec is fmc's by its name (older fmc and fmc bundle made it without the marker)", (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, ".fmc", "bundle"), { recursive: true });
  openStateDir(join(dir, ".fmc"));
  assert.equal(modeOf(join(dir, ".fmc")), 0o700);
});

test("a symlinked .fmc is refused before the link is followed: the target keeps its mode and gets no .gitignore", (t) => {
  const dir = tempDir(t);
  const target = join(dir, "elsewhere");
  mkdirSync(target);
  chmodSync(target, 0o755);
  symlinkSync("elsewhere", join(dir, ".fmc"));
  assert.throws(() => openStateDir(join(dir, ".fmc")), refused("STATE_SYMLINK", join(dir, ".fmc"), "symlink"));
  assert.equal(modeOf(target), 0o755);
  assert.throws(() => openStateDir(`${join(dir, ".fmc")}/`), refused("STATE_SYMLINK"), "a trailing / does not follow it either");
  assert.deepEqual(readdirSync(target), []);
  // a dangling one is no different
  const dangling = join(dir, "d");
  mkdirSync(dangling);
  symlinkSync("nowhere", join(dangling, ".fmc"));
  assert.throws(() => openStateDir(join(dangling, ".fmc")), refused("STATE_SYMLINK"));
  assert.equal(existsSync(join(dangling, "nowhere")), false);
});

test("a state path that is a file is refused as not a directory", (t) => {
  const file = join(tempDir(t), "f");
  writeFileSync(file, "x");
  assert.throws(() => openStateDir(file), refused("STATE_NOT_DIR", file));
});
