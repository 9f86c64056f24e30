// Connecting is never a silent wait: a host that has not answered after a moment is
// announced once ("[host] connecting to user@address… giving up after N s"); a host that
// answers, or refuses at once, is not. Real sockets on loopback: a server that accepts and
// never speaks (an unreachable sshd as the client sees it), ssh2's own server, a closed port.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import ssh2 from "ssh2";
import { SLOW_CONNECT_MS, SshTransport } from "../../src/hosts/ssh.js";
import { FmcError } from "../../src/errors.js";
import { tempDir } from "../helpers.js";

const listen = (server: Server) => new Promise<number>((done) => server.listen(0, "127.0.0.1", () => done((server.address() as { port: number }).port)));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP server that accepts and never says a word: SSH's banner never comes. */
async function silentServer(t: { after: (fn: () => void) => void }): Promise<number> {
  const sockets: Socket[] = [];
  const server = createServer((s) => void sockets.push(s));
  const port = await listen(server);
  t.after(() => {
    sockets.forEach((s) => s.destroy());
    server.close();
  });
  return port;
}

test("a host that does not answer is announced once, naming it, its address and the time limit; then SSH_CONNECT", async (t) => {
  const port = await silentServer(t);
  const lines: Array<{ line: string; at: number }> = [];
  const t0 = Date.now();
  const err = await SshTransport.connect(
    { name: "web1", address: "127.0.0.1", port, user: "core" },
    { privateKeys: [], knownHostsFile: join(tempDir(t), "known_hosts"), connectTimeoutMs: 1500, slowConnect: { afterMs: 300, say: (line) => lines.push({ line, at: Date.now() - t0 }) } },
  ).then(
    () => assert.fail("connected to a server that never spoke"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof FmcError && err.code === "SSH_CONNECT", String(err));
  assert.match(err.message, new RegExp(`^web1: cannot connect to core@\\[127\\.0\\.0\\.1\\]:${port}: `));
  assert.deepEqual(lines.map((l) => l.line), [`[web1] connecting to core@[127.0.0.1]:${port}… (no answer yet; giving up after 1.5 s)`]);
  assert.ok(lines[0]!.at >= 300 && lines[0]!.at < 1500, `announced after ${lines[0]!.at} ms`);
  await sleep(400);
  assert.equal(lines.length, 1, "said once");
});

test("by default the announcement goes to stderr after 2 s", async (t) => {
  const port = await silentServer(t);
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string) => written.push(String(chunk)) > 0) as typeof process.stderr.write;
  try {
    await SshTransport.connect({ name: "db1", address: "127.0.0.1", port, user: "root" }, { privateKeys: [], knownHostsFile: join(tempDir(t), "known_hosts"), connectTimeoutMs: SLOW_CONNECT_MS + 600 }).catch(() => undefined);
  } finally {
    process.stderr.write = write;
  }
  assert.equal(SLOW_CONNECT_MS, 2000);
  assert.deepEqual(written, [`[db1] connecting to root@[127.0.0.1]:${port}… (no answer yet; giving up after 2.6 s)\n`]);
});

/** An ed25519 pair ssh2 can read back (it drops a leading zero byte about 1 time in 256: src/state/secrets.ts). */
function keyPair(): { private: string; public: string } {
  for (;;) {
    const pair = ssh2.utils.generateKeyPairSync("ed25519");
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error) && !(ssh2.utils.parseKey(pair.public) instanceof Error)) return pair;
  }
}

test("a host that answers in time, or refuses at once, is not announced", async (t) => {
  const hostKey = keyPair();
  const userKey = keyPair();
  const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on("authentication", (ctx) => (ctx.method === "publickey" ? ctx.accept() : ctx.reject(["publickey"])));
  });
  const port = await new Promise<number>((done) => server.listen(0, "127.0.0.1", () => done((server.address() as { port: number }).port)));
  t.after(() => server.close());
  const lines: string[] = [];
  const slowConnect = { afterMs: 300, say: (l: string) => void lines.push(l) };
  const dir = tempDir(t);
  const transport = await SshTransport.connect({ name: "fast", address: "127.0.0.1", port, user: "root" }, { privateKeys: [userKey.private], knownHostsFile: join(dir, "known_hosts"), acceptNew: true, slowConnect });
  transport.close();
  // a closed port: refused at once
  const closed = createServer();
  const closedPort = await listen(closed);
  await new Promise((r) => closed.close(r));
  const refused = await SshTransport.connect({ name: "gone", address: "127.0.0.1", port: closedPort, user: "root" }, { privateKeys: [], knownHostsFile: join(dir, "known_hosts"), slowConnect }).catch((e: unknown) => e);
  assert.ok(refused instanceof FmcError && /ECONNREFUSED/.test(refused.message), String(refused));
  await sleep(500);
  assert.deepEqual(lines, []);
});
