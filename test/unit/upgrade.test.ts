// fmc upgrade's checks and order on the seed, without a cluster: version skew, batches.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseK3sVersion, skewRefusal, upgradePlan } from "../../src/ops/upgrade.js";
import { contextFor } from "../helpers.js";

const v = parseK3sVersion;

test("version skew: patch and next-minor upgrades go ahead; a skipped minor, a downgrade, the same version or a major change are refused", () => {
  assert.equal(skewRefusal(v("v1.33.4+k3s1"), v("v1.33.5+k3s1")), undefined);
  assert.equal(skewRefusal(v("v1.33.4+k3s1"), v("v1.33.4+k3s2")), undefined, "a new K3s build of the same Kubernetes");
  assert.equal(skewRefusal(v("v1.33.4+k3s1"), v("v1.34.1+k3s1")), undefined);
  assert.match(skewRefusal(v("v1.33.4+k3s1"), v("v1.35.0+k3s1"))!, /skips 1 minor version\(s\)/);
  assert.match(skewRefusal(v("v1.33.4+k3s1"), v("v1.33.3+k3s1"))!, /older than/);
  assert.match(skewRefusal(v("v1.33.4+k3s1"), v("v1.33.4+k3s1"))!, /runs v1\.33\.4\+k3s1 already/);
  assert.match(skewRefusal(v("v1.33.4+k3s1"), v("v2.0.0+k3s1"))!, /major/);
  for (const bad of ["1.33.4", "v1.33.4", "v1.33.4+k3s", "v1.33.4+k3s1; rm -rf /"]) assert.throws(() => v(bad), /is not a K3s version/);
});

test("order on the seed: the three servers one by one, then the agents in batches of --batch", () => {
  const p = upgradePlan(contextFor(), "v1.33.4+k3s1", "v1.33.5+k3s1", undefined, 2);
  assert.ok(p.ok);
  assert.deepEqual(p.steps.map((s) => `${s.role}:${s.wave}:${s.node}`), ["server:1:master1", "server:2:master2", "server:3:master3", "agent:1:worker1", "agent:1:worker2", "agent:2:worker3", "agent:2:storage1"]);
  assert.throws(() => upgradePlan(contextFor(), "v1.33.4+k3s1", "v1.33.5+k3s1", undefined, 0), /--batch 0/);
});
