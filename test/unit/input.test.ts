// Hostile files where a spec, a key file or an output directory is expected: every one
// ends in a coded error and exit 1, never a stack trace, a hang or unbounded memory.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { fmc, FMC, tempDir } from "../helpers.js";
import { SEED_YAML } from "../../src/model/seed.js";

const isRoot = process.getuid?.() === 0;

function expectCoded(r: { status: number | null; stderr: string }, code: string, message: RegExp) {
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`error\\[${code}\\]`));
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /internal error|    at /, "no stack trace");
}

test("the spec is read only from a regular file of bounded size", (t) => {
  const dir = tempDir(t);
  // a device would grow without end, a FIFO would block for ever
  expectCoded(fmc(["validate", "-f", "/dev/zero"], dir), "FILE_NOT_REGULAR", /spec file \/dev\/zero is not a regular file/);
  assert.equal(spawnSync("mkfifo", [join(dir, "fifo")]).status, 0);
  const fifo = spawnSync(process.execPath, [FMC, "validate", "fifo"], { cwd: dir, encoding: "utf8", timeout: 20_000, env: { ...process.env, NO_COLOR: "1" } });
  expectCoded(fifo, "FILE_NOT_REGULAR", /fifo is not a regular file/);
  expectCoded(fmc(["validate", "-f", dir], dir), "FILE_NOT_REGULAR", /is a directory/);
  symlinkSync("loop", join(dir, "loop"));
  expectCoded(fmc(["validate", "loop"], dir), "FILE_SYMLINK_LOOP", /is a symlink loop/);
  expectCoded(fmc(["validate", "missing.yaml"], dir), "SPEC_NOT_FOUND", /spec file missing\.yaml does not exist/);
  // 2 MB: above the stated limit, refused before parsing
  writeFileSync(join(dir, "big.yaml"), `name: "${"x".repeat(2 * 1024 * 1024)}"\n`);
  expectCoded(fmc(["validate", "big.yaml"], dir), "FILE_TOO_LARGE", /big\.yaml is 2097161 bytes; the limit is 1048576/);
  // a byte that is not UTF-8 is named with its line, never silently replaced
  writeFileSync(join(dir, "latin1.yaml"), Buffer.concat([Buffer.from(SEED_YAML.slice(0, 200)), Buffer.from([0xe9]), Buffer.from(SEED_YAML.slice(200))]));
  const line = SEED_YAML.slice(0, 200).split("\n").length;
  expectCoded(fmc(["validate", "latin1.yaml"], dir), "FILE_ENCODING", new RegExp(`byte 0xe9 at line ${line} is not valid UTF-8`));
});

test("an unreadable spec is a coded error", (t) => {
  const dir = tempDir(t);
  const spec = join(dir, "cluster.yaml");
  writeFileSync(spec, SEED_YAML);
  chmodSync(spec, 0o000);
  chmodSync(dir, 0o755);
  // root reads anything: run as nobody when we are root
  const r = isRoot
    ? spawnSync("runuser", ["-u", "nobody", "--", process.execPath, FMC, "validate", spec], { cwd: "/", encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } })
    : spawnSync(process.execPath, [FMC, "validate", spec], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  expectCoded(r, "FILE_UNREADABLE", /cluster\.yaml is not readable by this user/);
});

test("a key path that is a directory is a problem at that key", (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, "keys.pub"));
  writeFileSync(join(dir, "cluster.yaml"), SEED_YAML.replace("keys: []                        #", 'keys: ["./keys.pub"]            #'));
  const r = fmc(["validate"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error ssh\.keys\[0\] \(line \d+\): key file .*keys\.pub is a directory/);
  assert.doesNotMatch(r.stderr, /internal error/);
});

test("a YAML alias bomb is refused quickly as a spec problem", (t) => {
  const dir = tempDir(t);
  const levels = ["a: &a [x,x,x,x,x,x,x,x,x,x]"];
  for (let i = 1; i < 9; i++) levels.push(`l${i}: &l${i} [${Array(10).fill(i === 1 ? "*a" : `*l${i - 1}`).join(",")}]`);
  writeFileSync(join(dir, "bomb.yaml"), levels.join("\n") + "\n");
  const r = fmc(["validate", "bomb.yaml"], dir);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \(spec\): YAML: more than 200 alias expansions/);
});

test("a positional spec path is the spec; two different ones and surplus words are refused", (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "broken.yaml"), "apiVersion: fmc.dev/v1alpha1\nkind: Cluster\n");
  const r = fmc(["validate", "broken.yaml"], dir);
  assert.equal(r.status, 1, "the named file is validated, not the built-in seed");
  assert.match(r.stderr, /^broken\.yaml: \d+ error/m);
  expectCoded(fmc(["validate", "broken.yaml", "-f", "other.yaml"], dir), "USAGE", /two spec files given/);
  expectCoded(fmc(["validate", "broken.yaml", "extra"], dir), "USAGE", /unexpected argument: extra/);
  expectCoded(fmc(["render", "-f", ""], dir), "USAGE", /spec file name is empty/);
});

test("render -o must name a directory fmc can write", (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, "afile"), "x");
  expectCoded(fmc(["render", "-o", ""], dir), "USAGE", /output directory name is empty/);
  assert.equal(existsSync(join(dir, ".fmc")), false, "no secret is generated before -o is checked");
  expectCoded(fmc(["render", "-o", "afile"], dir), "OUT_NOT_DIR", /afile is a file, not a directory/);
  expectCoded(fmc(["render", "-o", "afile/sub"], dir), "OUT_NOT_DIR", /afile\/sub is a file, not a directory/);
  assert.equal(readFileSync(join(dir, "afile"), "utf8"), "x");
  if (isRoot) {
    // an unwritable parent, as a user who can't write there
    const ro = join(dir, "ro");
    mkdirSync(ro, { mode: 0o555 });
    chmodSync(dir, 0o777);
    const r = spawnSync("runuser", ["-u", "nobody", "--", process.execPath, FMC, "render", "-o", join(ro, "out"), "--state", join(dir, "state-nobody")], { cwd: dir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", HOME: dir } });
    expectCoded(r, "OUT_UNWRITABLE", /ro\/out is not writable/);
  }
});
