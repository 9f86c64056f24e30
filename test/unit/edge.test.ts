// Edge and VIP-pair tests: the rendered HAProxy and Keepalived configs pass the real
// daemons' checks, the edge HAProxy runs in a throwaway network namespace and shows its
// X-Forwarded-For policy, redirect and health endpoint to real requests, Keepalived's
// check loop passes and fails against it, the Traefik unit passes systemd-analyze
// verify, and the edge phase plans nothing once the host has what it planned.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, execFileSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import type { Change } from "../../src/ops/change.js";
import { edge } from "../../src/phases/edge.js";
import { loadbalancer } from "../../src/phases/loadbalancer.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import { certBundle, edgeHaproxyConfig, forwardersList, traefikCredentialPath, TRAEFIK_CREDENTIALS, traefikUnit } from "../../src/render/edge.js";
import { haproxyConfig } from "../../src/render/haproxy.js";
import { checkScript, keepalivedConfig } from "../../src/render/keepalived.js";
import { traefikDynamic, traefikStatic } from "../../src/render/traefik.js";
import type { ClusterContext } from "../../src/state/context.js";
import { CLOUDFLARE_IPV4 } from "../../src/model/schema.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { contextFor, fmc, requireTool, tempDir } from "../helpers.js";
import { loadSpec } from "../../src/model/load.js";
import { mkdirSync } from "node:fs";

const HAPROXY_YAML = `${SEED_YAML}\nedge:\n  engine: haproxy\n`;
const sh = (command: string, input?: string) => spawnSync("bash", ["-c", command], { encoding: "utf8", input });

/** A self-signed certificate and key for the public names, made by openssl. */
function makeCert(dir: string, name = "origin"): { cert: string; key: string } {
  requireTool("openssl");
  const r = sh(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=app.example.com -addext subjectAltName=DNS:app.example.com -keyout ${dir}/${name}-key.pem -out ${dir}/${name}.pem`);
  assert.equal(r.status, 0, r.stderr);
  return { cert: readFileSync(join(dir, `${name}.pem`), "utf8"), key: readFileSync(join(dir, `${name}-key.pem`), "utf8") };
}

/** The edge HAProxy config with its files in `dir` and its admin socket there too. */
function edgeFiles(ctx: ClusterContext, dir: string, oc: { cert: string; key: string }): string {
  const paths = { bundle: join(dir, "origin-bundle.pem"), forwarders: join(dir, "forwarders.acl") };
  writeFileSync(paths.bundle, certBundle(oc.cert, oc.key), { mode: 0o600 });
  writeFileSync(paths.forwarders, forwardersList(ctx));
  const cfg = edgeHaproxyConfig(ctx, ctx.topo.host("traefik1"), paths).replace("/run/haproxy/admin.sock", join(dir, "admin.sock"));
  writeFileSync(join(dir, "haproxy.cfg"), cfg);
  return join(dir, "haproxy.cfg");
}

test("load balancer HAProxy: API checked with /ping over TLS, seamless reloads, a health endpoint; haproxy -c accepts it", (t) => {
  requireTool("haproxy");
  const ctx = contextFor();
  const cfg = haproxyConfig(ctx, ctx.topo.host("loadbalancer1"));
  const api = cfg.split(/^backend k8s-api\n/m)[1]!.split("\n\n")[0]!;
  assert.match(api, /^\s+option httpchk GET \/ping$/m);
  assert.match(api, /^\s+default-server check .* check-ssl verify none$/m);
  // the ingress backends stay plain TCP checks
  const ingress = cfg.split(/^backend ingress-http\n/m)[1]!.split("\n\n")[0]!;
  assert.doesNotMatch(ingress, /httpchk|check-ssl/);
  assert.match(cfg, /stats socket \S+ mode 600 level admin expose-fd listeners/);
  assert.match(cfg, /bind 10\.17\.5\.11:8405\n(\s+#.*\n)?\s+monitor-uri \/ping/);
  const dir = tempDir(t);
  writeFileSync(join(dir, "haproxy.cfg"), cfg);
  const r = spawnSync("haproxy", ["-c", "-q", "-f", join(dir, "haproxy.cfg")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
});

test("edge HAProxy: TLS with the origin bundle, the XFF ACL from wireguard.forwardFrom; haproxy -c accepts it and refuses a wrong key", (t) => {
  requireTool("haproxy");
  const ctx = contextFor(HAPROXY_YAML);
  const dir = tempDir(t);
  const oc = makeCert(dir);
  const file = edgeFiles(ctx, dir, oc);
  const cfg = readFileSync(file, "utf8");
  const https = cfg.split(/^frontend https\n/m)[1]!.split("\n\n")[0]!.split("\n").map((l) => l.trim());
  assert.ok(https.includes(`acl from_forwarders src -f ${join(dir, "forwarders.acl")}`));
  assert.ok(https.includes("http-request del-header X-Forwarded-For unless from_forwarders"));
  assert.ok(https.includes("option forwardfor"));
  assert.ok(https.some((l) => l.startsWith(`bind :443 ssl crt ${join(dir, "origin-bundle.pem")}`)));
  const acl = readFileSync(join(dir, "forwarders.acl"), "utf8").split("\n").filter((l) => l && !l.startsWith("#"));
  assert.deepEqual(acl, CLOUDFLARE_IPV4);
  assert.match(cfg, /^\s+server api 10\.17\.5\.10:80 check /m);
  assert.match(cfg, /^frontend http\n\s+bind :80\n\s+http-request redirect scheme https code 301/m);
  const ok = spawnSync("haproxy", ["-c", "-q", "-f", file], { encoding: "utf8" });
  assert.equal(ok.status, 0, ok.stderr);
  // the check is real: a key that is not the certificate's fails it
  const other = makeCert(dir, "other");
  writeFileSync(join(dir, "origin-bundle.pem"), certBundle(oc.cert, other.key), { mode: 0o600 });
  assert.notEqual(spawnSync("haproxy", ["-c", "-q", "-f", file], { encoding: "utf8" }).status, 0);
});

/** Runs `fn` with a network namespace of its own; background processes are killed and the namespace removed after. */
async function withNetns(fn: (ns: string, bg: (cmd: string[]) => ChildProcess) => Promise<void>): Promise<void> {
  const ns = `fmc-t${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  execFileSync("ip", ["netns", "add", ns]);
  const procs: ChildProcess[] = [];
  try {
    await fn(ns, (cmd) => {
      const p = spawn("ip", ["netns", "exec", ns, ...cmd], { stdio: "ignore" });
      procs.push(p);
      return p;
    });
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 100));
    for (const pid of execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).split("\n").filter(Boolean)) spawnSync("kill", ["-KILL", pid]);
    execFileSync("ip", ["netns", "del", ns]);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("edge HAProxy in a namespace: XFF kept only from forwarders, :80 redirects, /ping answers; Keepalived's check loop follows it", async (t) => {
  requireTool("haproxy");
  requireTool("curl");
  requireTool("python3");
  const ctx = contextFor(HAPROXY_YAML);
  const dir = tempDir(t);
  chmodSync(dir, 0o755); // haproxy drops to its user after reading its files; the socket dir is ours
  const file = edgeFiles(ctx, dir, makeCert(dir));
  // the API VIP is local here too: the edge binds the edge host's address, not every address
  writeFileSync(file, readFileSync(file, "utf8").replace("bind :80\n", "bind 10.17.2.21:80\n").replace("bind :443 ", "bind 10.17.2.21:443 "));
  const echo = join(dir, "echo.py");
  // a stand-in for the ingress: answers with every X-Forwarded-For line it got
  writeFileSync(
    echo,
    [
      "import http.server",
      "class H(http.server.BaseHTTPRequestHandler):",
      "    def do_GET(self):",
      "        b = ', '.join(self.headers.get_all('X-Forwarded-For') or []).encode()",
      "        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)",
      "    def log_message(self, *a): pass",
      "http.server.HTTPServer(('10.17.5.10', 80), H).serve_forever()",
    ].join("\n"),
  );
  const check = join(dir, "fmc-check-proxy");
  writeFileSync(check, checkScript(), { mode: 0o755 });
  await withNetns(async (ns, bg) => {
    const inNs = (command: string) => spawnSync("ip", ["netns", "exec", ns, "bash", "-c", command], { encoding: "utf8" });
    // the API VIP, the edge host, a Cloudflare address and an address of nobody in particular
    assert.equal(inNs("ip link set lo up && for a in 10.17.5.10 10.17.2.21 173.245.48.1 198.51.100.7; do ip addr add $a/32 dev lo; done").status, 0);
    bg(["python3", echo]);
    const curl = (args: string) => inNs(`curl -s --max-time 2 ${args}`);
    for (let i = 0; i < 50 && curl("-o /dev/null -w %{http_code} http://10.17.5.10/").stdout !== "200"; i++) await sleep(100);
    const haproxy = bg(["haproxy", "-db", "-f", file]);
    for (let i = 0; i < 50 && curl("-o /dev/null -w %{http_code} http://10.17.2.21:8082/ping").stdout !== "200"; i++) await sleep(100);
    assert.equal(curl("-o /dev/null -w %{http_code} http://10.17.2.21:8082/ping").stdout, "200", "the health endpoint answers");
    const via = (source: string) => curl(`-k --interface ${source} -H 'X-Forwarded-For: 1.2.3.4' --resolve app.example.com:443:10.17.2.21 https://app.example.com/`).stdout;
    assert.equal(via("173.245.48.1"), "1.2.3.4, 173.245.48.1", "a forwarder's X-Forwarded-For is kept and the source appended");
    assert.equal(via("198.51.100.7"), "198.51.100.7", "anyone else's is replaced by the source");
    assert.equal(curl("-o /dev/null -w '%{http_code} %{redirect_url}' http://10.17.2.21/x").stdout, "301 https://10.17.2.21/x");
    // Keepalived's check passes while HAProxy answers and fails once it is gone (how fast
    // is bench/failover's business, not a unit test's)
    const url = "http://10.17.2.21:8082/ping";
    assert.equal(inNs(`${check} ${url} 200 850`).status, 0);
    haproxy.kill("SIGKILL");
    await sleep(100);
    assert.equal(inNs(`${check} ${url} 200 850`).status, 1);
  });
});

test("Keepalived: VRRPv3, sub-second adverts, nopreempt unless asked, the proxy's health endpoint checked; keepalived --config-test accepts it", (t) => {
  requireTool("keepalived");
  const dir = tempDir(t);
  writeFileSync(join(dir, "chk"), checkScript(), { mode: 0o755 });
  const configTest = (text: string) => {
    // wherever the host's family installs the script, here it is the one just written
    writeFileSync(join(dir, "keepalived.conf"), text.replace(/script "\S+\/fmc-check-proxy /g, `script "${join(dir, "chk")} `));
    return spawnSync("keepalived", ["--config-test", "-f", join(dir, "keepalived.conf")], { encoding: "utf8" });
  };
  const ctx = contextFor();
  const lb = keepalivedConfig(ctx, ctx.topo.host("loadbalancer1"));
  const ed = keepalivedConfig(ctx, ctx.topo.host("traefik2"));
  for (const conf of [lb, ed]) {
    assert.match(conf, /^\s+vrrp_version 3$/m);
    assert.match(conf, /^\s+vrrp_check_unicast_src$/m, "only the unicast peers are heard");
    assert.match(conf, /^\s+advert_int 0\.1$/m);
    assert.match(conf, /^\s+state BACKUP\n(\s+#.*\n)?\s+nopreempt$/m);
    assert.doesNotMatch(conf, /auth_type|auth_pass|state MASTER/);
    const r = configTest(conf);
    assert.equal(r.status, 0, r.stderr);
  }
  // the seed's VIP holders run AlmaLinux: the script where RHEL's SELinux policy lets keepalived run it
  assert.match(lb, /script "\/usr\/libexec\/keepalived\/fmc-check-proxy http:\/\/10\.17\.5\.11:8405\/ping 200 850"\n\s+interval 1\n/);
  assert.match(ed, /script "\/usr\/libexec\/keepalived\/fmc-check-proxy http:\/\/10\.17\.2\.22:8082\/ping 200 850"/);
  assert.match(ed, /vrrp_script chk_traefik_edge/);
  assert.match(ed, /virtual_router_id 52/);
  // the spec's timing and preemption reach the config
  const tuned = contextFor(`${SEED_YAML}\nvrrp:\n  advertMs: 250\n  preempt: true\n  checkMs: 1500\n`);
  const tc = keepalivedConfig(tuned, tuned.topo.host("loadbalancer2"));
  assert.match(tc, /advert_int 0\.25/);
  assert.doesNotMatch(tc, /nopreempt/);
  assert.match(tc, /ping 1500 0"\n\s+interval 2\n/);
  assert.equal(configTest(tc).status, 0);
  // the check is real: a config whose script is missing fails it
  writeFileSync(join(dir, "keepalived.conf"), lb);
  assert.notEqual(spawnSync("keepalived", ["--config-test", "-f", join(dir, "keepalived.conf")]).status, 0);
});

test("Traefik: the unit passes systemd-analyze verify; its credentials are the files the dynamic config names; XFF trusted from forwarders only", (t) => {
  requireTool("systemd-analyze");
  const ctx = contextFor();
  const dir = tempDir(t);
  const bin = join(dir, "traefik");
  writeFileSync(bin, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  writeFileSync(join(dir, "traefik.service"), traefikUnit(ctx, bin));
  const r = spawnSync("systemd-analyze", ["verify", join(dir, "traefik.service")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  // and it fails on a unit whose binary is missing
  writeFileSync(join(dir, "traefik.service"), traefikUnit(ctx, join(dir, "missing")));
  assert.notEqual(spawnSync("systemd-analyze", ["verify", join(dir, "traefik.service")]).status, 0);
  const unit = traefikUnit(ctx, "/usr/local/bin/traefik");
  const creds = Object.fromEntries([...unit.matchAll(/^LoadCredential=([^:]+):(.+)$/gm)].map((m) => [m[1], m[2]]));
  assert.deepEqual(creds, { [TRAEFIK_CREDENTIALS.cert]: ctx.spec.edge.certFile, [TRAEFIK_CREDENTIALS.key]: ctx.spec.edge.keyFile });
  assert.match(unit, /^DynamicUser=yes$/m);
  const dyn = parseYaml(JSON.stringify(traefikDynamic(ctx))) as { tls: { certificates: Array<{ certFile: string; keyFile: string }> } };
  assert.deepEqual(dyn.tls.certificates, [{ certFile: traefikCredentialPath("origin.pem"), keyFile: traefikCredentialPath("origin-key.pem") }]);
  const st = traefikStatic(ctx) as { entryPoints: { websecure: { forwardedHeaders: { trustedIPs: string[] } } }; ping: { entryPoint: string } };
  assert.deepEqual(st.entryPoints.websecure.forwardedHeaders.trustedIPs, CLOUDFLARE_IPV4);
  assert.equal(st.ping.entryPoint, "metrics");
});

// ---- plans from facts

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** Facts of a Debian edge host that has exactly what `changes` put there (or nothing). */
function factsAfter(host: string, address: string, changes: readonly Change[], extra: { guards?: string[]; installed?: boolean } = {}): HostFacts {
  const files = changes.filter((c) => c.file).map((c) => `${c.file!.path} ${(c.file!.mode ?? 0o644).toString(8)} root root ${b64(c.file!.content)}`);
  const units = ["haproxy.service", "keepalived.service", "traefik.service"].flatMap((u) =>
    extra.installed && changes.some((c) => c.title.includes(u)) ? [`Id=${u}`, "ActiveState=active", "UnitFileState=enabled", ""] : [`Id=${u}`, "ActiveState=inactive", "UnitFileState=", ""],
  );
  const sections: Record<string, string[]> = {
    os: ["ID=debian", 'VERSION_ID="12"'],
    hostname: [host],
    addr: [`eth0 ${address}/24`],
    units,
    packages: extra.installed ? ["haproxy", "keepalived", "curl"].map((p) => `${p} install ok installed`) : [],
    files,
    guard: extra.guards ?? [],
  };
  return parseFacts(host, Object.entries(sections).map(([k, v]) => [`@${k}`, ...v].join("\n")).join("\n") + "\n@end\n");
}

function pcFor(ctx: ClusterContext, oc?: { cert: string; key: string }): PhaseContext {
  return { render: ctx, mask: (x) => ctx.secrets.mask(x), loginUser: () => "root", originCertificate: oc };
}

test("edge phase (haproxy): plans packages, files, reloads; nothing once done; the key never shows in a diff", (t) => {
  const ctx = contextFor(HAPROXY_YAML);
  const oc = makeCert(tempDir(t));
  const pc = pcFor(ctx, oc);
  const host = ctx.topo.host("traefik1");
  const first = edge.plan(pc, host, factsAfter("traefik1", host.address, []));
  const titles = first.map((c) => c.title);
  assert.equal(titles[0], "install haproxy, keepalived, curl");
  for (const p of ["/etc/haproxy/forwarders.acl", "/etc/haproxy/certs/origin.pem", "/etc/haproxy/haproxy.cfg", "/etc/keepalived/fmc-check-proxy", "/etc/keepalived/keepalived.conf"]) assert.ok(titles.includes(`create ${p}`), `${p} in ${titles}`);
  // the files the config names are written before the config is checked
  assert.ok(titles.indexOf("create /etc/haproxy/certs/origin.pem") < titles.indexOf("create /etc/haproxy/haproxy.cfg"));
  const bundle = first.find((c) => c.path === "/etc/haproxy/certs/origin.pem")!;
  assert.equal(bundle.file!.mode, 0o600);
  assert.ok(bundle.file!.secret && bundle.commands.at(-1)!.stdinSecret);
  assert.ok(bundle.diff!.includes("<secret:origin-key>") && !first.some((c) => c.diff?.includes("PRIVATE KEY-----\n")));
  assert.match(first.find((c) => c.path === "/etc/haproxy/haproxy.cfg")!.commands.at(-1)!.display, /checked by haproxy/);
  assert.ok(titles.some((x) => /haproxy\.service/.test(x)) && titles.some((x) => /keepalived\.service/.test(x)));
  assert.ok(!titles.some((x) => /SELinux/.test(x)), "no SELinux step on Debian");
  // once the host has it all, nothing is planned
  assert.deepEqual(edge.plan(pc, host, factsAfter("traefik1", host.address, first, { installed: true })).map((c) => c.title), []);
  // the load balancers converge the same way
  const lbHost = ctx.topo.host("loadbalancer1");
  const lbFirst = loadbalancer.plan(pc, lbHost, factsAfter("loadbalancer1", lbHost.address, []));
  assert.deepEqual(loadbalancer.plan(pc, lbHost, factsAfter("loadbalancer1", lbHost.address, lbFirst, { installed: true })).map((c) => c.title), []);
});

test("edge phase: no origin certificate, a key of another certificate, no Traefik binary, a binary with another SHA-256 are refused", (t) => {
  const dir = tempDir(t);
  const oc = makeCert(dir);
  const other = makeCert(dir, "other");
  const hctx = contextFor(HAPROXY_YAML);
  const host = hctx.topo.host("traefik1");
  const none = factsAfter("traefik1", host.address, []);
  assert.throws(() => edge.plan(pcFor(hctx), host, none), (e: Error & { code?: string }) => e.code === "EDGE_CERT" && /\.fmc\/tls\/origin\.pem/.test(String((e as { hint?: string }).hint)));
  assert.throws(() => edge.plan(pcFor(hctx, { cert: oc.cert, key: other.key }), host, none), /does not belong/);
  const tctx = contextFor();
  assert.throws(() => edge.plan(pcFor(tctx, oc), host, none), /edge\.traefikBinary is not set/);
  const bin = join(dir, "traefik");
  writeFileSync(bin, "not really traefik\n");
  const wrong = contextFor(`${SEED_YAML}\nedge:\n  traefikBinary:\n    path: ${bin}\n    sha256: \"${"0".repeat(64)}\"\n`);
  assert.throws(() => edge.plan(pcFor(wrong, oc), host, none), /has SHA-256 [0-9a-f]{64}, the spec says 0{64}/);
});

test("edge phase (traefik): binary uploaded and checked on the host, unit, config, credentials; nothing once done", (t) => {
  const dir = tempDir(t);
  const oc = makeCert(dir);
  const bin = join(dir, "traefik");
  writeFileSync(bin, "#!/bin/sh\necho traefik\n");
  const sha = createHash("sha256").update(readFileSync(bin)).digest("hex");
  const ctx = contextFor(`${SEED_YAML}\nedge:\n  traefikBinary:\n    path: ${bin}\n    sha256: \"${sha}\"\n`);
  const pc = pcFor(ctx, oc);
  const host = ctx.topo.host("traefik2");
  const first = edge.plan(pc, host, factsAfter("traefik2", host.address, [], { guards: ["traefik-binary 1"] }));
  const titles = first.map((c) => c.title);
  assert.deepEqual(titles.slice(0, 2), ["install keepalived, curl", "install Traefik v3.5 at /usr/local/bin/traefik"]);
  for (const p of ["/etc/traefik/traefik.yml", "/etc/traefik/dynamic/fmc.yml", "/etc/traefik/certs/origin.pem", "/etc/traefik/certs/origin-key.pem", "/etc/systemd/system/traefik.service"]) assert.ok(titles.includes(`create ${p}`), p);
  assert.equal(first.find((c) => c.path === "/etc/traefik/certs/origin-key.pem")!.file!.mode, 0o600);
  // the upload script really installs the binary, checks it, and records both sums (run by bash into a temp root)
  const install = first[1]!.commands.at(-1)!;
  const root = join(dir, "root");
  const run = sh(install.shell.replaceAll("/usr/local/bin/traefik", `${root}/bin/traefik`).replaceAll("/var/lib/fmc", `${root}/fmc`), install.stdin);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(sh(`${root}/bin/traefik`).stdout, "traefik\n");
  assert.equal(sh(`cd / && sha256sum -c --status ${root}/fmc/traefik.sha256 && grep -qx ${sha} ${root}/fmc/traefik.source`).status, 0);
  const tampered = sh(install.shell.replaceAll("/usr/local/bin/traefik", `${root}/bin/traefik2`).replaceAll("/var/lib/fmc", `${root}/fmc`), b64("something else\n"));
  assert.equal(tampered.status, 3);
  assert.match(tampered.stderr, /does not have SHA-256/);
  // the unit restarts Traefik; once everything is there nothing is planned
  assert.ok(titles.some((x) => /traefik\.service/.test(x) && /start/.test(x)));
  const done = factsAfter("traefik2", host.address, first, { guards: ["traefik-binary 0"], installed: true });
  assert.deepEqual(edge.plan(pc, host, done).map((c) => c.title), []);
});

test("validate warns (not an error) when the edge phase could not run: Traefik without a binary, no origin certificate", (t) => {
  const warnings = (yaml: string, files?: Record<string, string>) =>
    loadSpec(yaml, files ? { readKeyFile: (p) => files[p] } : {}).problems.filter((p) => p.severity === "warning" && p.path.startsWith("edge"));
  const noBinary = warnings(SEED_YAML);
  assert.deepEqual(noBinary.map((p) => p.path), ["edge.traefikBinary"]);
  assert.match(noBinary[0]!.message, /no Traefik binary is configured: fmc apply stops at the edge phase/);
  assert.match(noBinary[0]!.hint!, /edge\.traefikBinary\.path .* or edge\.traefikBinary\.url .* sha256; or use edge\.engine: haproxy/);
  const withBinary = `${SEED_YAML}\nedge:\n  traefikBinary:\n    url: https://example.com/traefik.tar.gz\n    sha256: "${"a".repeat(64)}"\n`;
  assert.deepEqual(warnings(withBinary), []);
  assert.deepEqual(warnings(HAPROXY_YAML), []);
  // the certificate is looked for next to the spec, where the edge phase reads it
  const cert = warnings(HAPROXY_YAML, {});
  assert.deepEqual(cert.map((p) => p.path), ["edge"]);
  assert.match(cert[0]!.message, /no origin certificate: \.fmc\/tls\/origin\.pem and \.fmc\/tls\/origin-key\.pem are missing/);
  assert.match(cert[0]!.hint!, /Cloudflare Origin CA certificate/);
  assert.match(warnings(HAPROXY_YAML, { ".fmc/tls/origin.pem": "x" })[0]!.message, /origin-key\.pem is missing/);
  assert.deepEqual(warnings(HAPROXY_YAML, { ".fmc/tls/origin.pem": "x", ".fmc/tls/origin-key.pem": "y" }), []);
  assert.deepEqual(warnings(HAPROXY_YAML, { ".fmc/lab/inventory.json": "{}" }), [], "a lab brings its own certificate");
  // no edge hosts: no edge phase, nothing to warn about
  const noEdge = SEED_YAML.replace(/^  - \{ name: traefik[12],.*\n/gm, "").replace(/^  - \{ name: edge, .*\n/m, "").replace(/^ +- \{ description: (HTTPS?) from the tunnel to Traefik.*\n/gm, "");
  assert.deepEqual(warnings(noEdge, {}), []);

  // fmc validate prints them with their paths and hints, and still exits 0
  const dir = tempDir(t);
  writeFileSync(join(dir, "cluster.yaml"), SEED_YAML);
  const v = fmc(["validate"], dir);
  assert.equal(v.status, 0, v.stderr);
  assert.match(v.stderr, /^warning edge\.traefikBinary( \(line \d+\))?: edge\.engine is traefik but no Traefik binary is configured.*\n\s+hint: set edge\.traefikBinary\.path/m);
  assert.match(v.stderr, /^warning edge( \(line \d+\))?: no origin certificate: .*\n\s+hint: put the Cloudflare Origin CA certificate/m);
  assert.match(v.stdout, /valid — .*, 2 warnings$/m);
  mkdirSync(join(dir, ".fmc", "tls"), { recursive: true });
  for (const f of ["origin.pem", "origin-key.pem"]) writeFileSync(join(dir, ".fmc", "tls", f), "pem\n");
  assert.doesNotMatch(fmc(["validate"], dir).stderr, /origin certificate/);
});
