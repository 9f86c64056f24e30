// The fact parser's answers about block devices: lsblk's JSON read as devices, no JSON at all
// (an lsblk without -J) as no block device facts, and a broken answer as an error with a code,
// never as "that device does not exist" (the storage phase would then plan for a missing disk).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { contextFor, ROOT } from "../helpers.js";
import { parseFacts } from "../../src/hosts/facts.js";
import { RecordingTransport, type Transport } from "../../src/hosts/transport.js";
import { plan } from "../../src/engine/run.js";
import type { Phase } from "../../src/phases/phase.js";
import { FmcError } from "../../src/errors.js";

/** Captured from a real host (test/fixtures/lvm/README.md): lsblk's JSON and the rest of the storage facts. */
const captured = readFileSync(join(ROOT, "test/fixtures/lvm/fresh.txt"), "utf8").split("\n").filter((l) => !l.startsWith("#")).join("\n");
const rest = "@os\nID=debian\n@hostname\nstorage1\n@files\n@end\n";
/** The captured facts with lsblk's section replaced by `text`. */
const withLsblk = (text: string) => `${captured.replace(/@lsblk\n[\s\S]*?(?=\n@[a-z]+\n)/, `@lsblk\n${text}`)}\n${rest}`;

test("lsblk's JSON becomes the block devices; no answer at all means no block device facts", () => {
  const f = parseFacts("storage1", `${captured}\n${rest}`);
  assert.ok(f.blockDevices.has("/dev/vdb"), [...f.blockDevices.keys()].join(", "));
  assert.equal(parseFacts("storage1", withLsblk("")).blockDevices.size, 0);
});

test("a broken lsblk answer is an error with a code, not a device that does not exist", () => {
  const whole = JSON.stringify(JSON.parse(/@lsblk\n([\s\S]*?)\n@[a-z]+\n/.exec(captured)![1]!));
  for (const broken of [whole.slice(0, Math.floor(whole.length / 2)), "lsblk: unknown column: FSTYPE", '{"devices": []}']) {
    assert.throws(
      () => parseFacts("storage1", withLsblk(broken)),
      (e: FmcError) => e instanceof FmcError && e.code === "FACTS_LSBLK" && /^storage1: lsblk's /.test(e.message),
      broken,
    );
  }
});

test("through the engine: the host whose lsblk answer is broken is reported, not planned", async () => {
  const phase: Phase = { name: "disks", description: "reads block devices", hosts: (pc) => [pc.render.topo.host("storage1")], facts: () => ({ storage: true }), plan: () => [] };
  const t = new RecordingTransport("storage1", [(c) => (c.display === "read facts" ? { code: 0, stdout: withLsblk('{"blockdevices": [ {"name": "/dev/vdb", "si'), stderr: "" } : undefined)]);
  const ctx = contextFor();
  const p = await plan({ render: ctx, mask: (x) => x, loginUser: () => "root" }, [phase], new Map<string, Transport>([["storage1", t]]), { concurrency: 1 });
  assert.match(p.failedHosts.get("storage1") ?? "", /lsblk's answer is not JSON/);
});
