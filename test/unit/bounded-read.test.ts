// One bounded regular-file reader for everything fmc reads back (issue 22): the state files
// (secret store, peer list, K3s bootstrap marker, provisioning secrets), the render manifest
// out/.fmc-render (out/ is committed, so a shared repository can carry a link there) and a
// secret piped on stdin get the spec file's guards. A FIFO is refused by its type, never
// read (it would hang); a link to /dev/zero and a sparse file of gigabytes are refused
// without reading them whole (bad_alloc, or no end). The CLI runs in a child with a
// timeout, so a reader that blocks fails the test instead of hanging it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FMC, tempDir } from "../helpers.js";

const TIMEOUT = 10_000;

function run(args: string[], cwd: string, stdin: "ignore" | number = "ignore") {
  const r = spawnSync(process.execPath, [FMC, ...args], { cwd, encoding: "utf8", timeout: TIMEOUT, stdio: [stdin, "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function refused(r: ReturnType<typeof run>, code: string, path: string) {
  assert.equal(r.signal, null, `fmc hung and was killed (${r.signal}); stderr: ${r.stderr}`);
  assert.equal(r.status, 1, `exit 1; stderr: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`^error\\[${code}\\] `, "m"), r.stderr);
  assert.ok(r.stderr.includes(path), `${path} named: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /bad_alloc|internal error|\n\s+at /);
}

function checkout(t: { after: (fn: () => void) => void }): string {
  const dir = tempDir(t, "fmc-bounded-");
  assert.equal(run(["init"], dir).status, 0);
  mkdirSync(join(dir, ".fmc"), { mode: 0o700 });
  return dir;
}

/** A path made a FIFO, a link to /dev/zero, or a sparse file of 4 GiB. */
const BAD = {
  fifo: (p: string) => assert.equal(spawnSync("mkfifo", [p]).status, 0),
  "link to /dev/zero": (p: string) => symlinkSync("/dev/zero", p),
  "sparse 4 GiB": (p: string) => (writeFileSync(p, ""), truncateSync(p, 4 * 1024 ** 3)),
};

for (const name of ["secrets.json", "wireguard-peers.json", "k3s-bootstrapped.json"]) {
  test(`.fmc/${name} that is not a small regular file: fmc secrets list refuses it, naming it`, { timeout: 3 * TIMEOUT + 5000 }, (t) => {
    for (const [kind, make] of Object.entries(BAD)) {
      const dir = checkout(t);
      const file = join(dir, ".fmc", name);
      make(file);
      const r = run(["secrets", "list"], dir);
      refused(r, "STATE_CORRUPT", file);
      assert.ok(r.stderr.includes(kind === "sparse 4 GiB" ? "bytes" : "regular file"), r.stderr);
    }
  });
}

test(".fmc/provisioning-secrets.json as a FIFO: fmc provision secret list refuses it", { timeout: TIMEOUT + 5000 }, (t) => {
  const dir = checkout(t);
  const file = join(dir, ".fmc", "provisioning-secrets.json");
  BAD.fifo(file);
  refused(run(["provision", "secret", "list"], dir), "STATE_CORRUPT", file);
});

test("out/.fmc-render that is not a small regular file: fmc render refuses it, naming it, and writes nothing", { timeout: 3 * TIMEOUT + 5000 }, (t) => {
  for (const make of Object.values(BAD)) {
    const dir = checkout(t);
    mkdirSync(join(dir, "out"));
    const file = join(dir, "out", ".fmc-render");
    make(file);
    refused(run(["render", "-o", join(dir, "out")], dir), "OUT_MANIFEST", file);
    assert.equal(existsSync(join(dir, "out", ".gitignore")), false);
  }
});

test("fmc provision secret set < /dev/zero stops at the limit instead of reading without end", { timeout: TIMEOUT + 5000 }, (t) => {
  const dir = checkout(t);
  const fd = openSync("/dev/zero", "r");
  t.after(() => closeSync(fd));
  const r = run(["provision", "secret", "set", "cloudflare-api-token"], dir, fd);
  assert.equal(r.signal, null, `fmc hung and was killed; stderr: ${r.stderr}`);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^error\[FILE_TOO_LARGE\] /, r.stderr);
  assert.equal(existsSync(join(dir, ".fmc", "provisioning-secrets.json")), false, "nothing stored");
});

// A render refused for its -o is refused before the secret store exists (issue 22).
test("fmc render -o . and -o / are refused before .fmc/secrets.json is created", { timeout: 2 * TIMEOUT + 5000 }, (t) => {
  const dir = tempDir(t, "fmc-out-");
  assert.equal(run(["init"], dir).status, 0);
  for (const out of [".", "/"]) {
    const r = run(["render", "-o", out], dir);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^error\[OUT_NOT_EMPTY\] /m, r.stderr);
    assert.equal(existsSync(join(dir, ".fmc")), false, `-o ${out}: no state directory, no secrets`);
  }
});
