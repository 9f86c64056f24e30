// The in-cluster services (issue 12): every manifest fmc renders is checked against the
// schema it will meet (kubernetes-models for built-in kinds in render.test.ts; the CRDs
// kept in test/fixtures/charts for K3s's HelmChart/HelmChartConfig, ECK's Elasticsearch
// and Kibana, Strimzi's Kafka and KafkaNodePool), every chart value against the pinned
// chart's values.yaml, template keys and published values.schema.json, and nothing pinned
// may come from a retired source. Each check is shown to catch a wrong input too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import ajvModule from "ajv";
import ajv2020Module from "ajv/dist/2020.js";
import { renderAll } from "../../src/render/index.js";
import { diagramRows, diagramSvg } from "../../src/render/diagram.js";
import { chartValues, manifests } from "../../src/render/kubernetes.js";
import { longhornClaims } from "../../src/model/capacity.js";
import { nodeExporterHosts, staticScrapeJobs } from "../../src/render/prometheus.js";
import { base, firewalldOpenings, NODE_EXPORTER } from "../../src/phases/base.js";
import type { PhaseContext } from "../../src/phases/phase.js";
import { parseFacts, type HostFacts } from "../../src/hosts/facts.js";
import { loadSpec } from "../../src/model/load.js";
import { SEED_YAML } from "../../src/model/seed.js";
import { normalImage, RETIRED_SOURCES, retiredChart, retiredImage } from "../../src/model/retired-sources.js";
import { FmcError } from "../../src/errors.js";
import type { ClusterContext } from "../../src/state/context.js";
import { contextFor, ROOT } from "../helpers.js";

// ajv is CommonJS: its class is the default export's default
type AjvInstance = import("ajv").default;
type AjvClass = new (o: object) => AjvInstance;
const classOf = (m: unknown) => ((m as { default?: unknown }).default ?? m) as AjvClass;
const Ajv = classOf(ajvModule);
const Ajv2020 = classOf(ajv2020Module);
type Validate = ReturnType<AjvInstance["compile"]>;

const FIX = join(ROOT, "test/fixtures/charts");
const fixture = (name: string) => readFileSync(join(FIX, name), "utf8");
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML and JSON Schema
type Any = any;

const seed = contextFor();
const examples = readdirSync(join(ROOT, "examples")).map((d) => [d, contextFor(readFileSync(join(ROOT, "examples", d, "cluster.yaml"), "utf8"))] as const);
const contexts: ReadonlyArray<readonly [string, ClusterContext]> = [["seed", seed], ...examples];

/** Every document of every rendered Kubernetes manifest, parsed as K3s would read it. */
function renderedObjects(ctx: ClusterContext): Array<{ file: string; obj: Any }> {
  return renderAll(ctx)
    .filter((a) => a.path.startsWith("kubernetes/"))
    .flatMap((a) => parseAllDocuments(a.content).map((d) => ({ file: a.path, obj: d.toJS() as Any })));
}
const byKind = (ctx: ClusterContext, kind: string) => renderedObjects(ctx).filter((o) => o.obj.kind === kind).map((o) => o.obj);

// --- custom resources against their CRDs -------------------------------------------

/**
 * A CRD's structural schema as JSON Schema. Kubernetes prunes fields a CRD does not
 * declare instead of refusing them; here an undeclared field is an error (it is a typo
 * K3s would silently drop), except where the CRD preserves unknown fields.
 */
function jsonSchemaOf(s: Any): Any {
  if (!s || typeof s !== "object" || Array.isArray(s)) return s;
  const out: Any = {};
  for (const [k, v] of Object.entries(s)) {
    if (k.startsWith("x-kubernetes-") || k === "nullable") continue;
    if (k === "properties") out.properties = Object.fromEntries(Object.entries(v as object).map(([p, ps]) => [p, jsonSchemaOf(ps)]));
    else if (k === "items" || k === "not" || (k === "additionalProperties" && typeof v === "object")) out[k] = jsonSchemaOf(v);
    else if (k === "anyOf" || k === "allOf" || k === "oneOf") out[k] = (v as Any[]).map(jsonSchemaOf);
    else out[k] = v;
  }
  if (s["x-kubernetes-int-or-string"] && !out.anyOf) out.anyOf = [{ type: "integer" }, { type: "string" }];
  if (s.nullable && typeof out.type === "string") out.type = [out.type, "null"];
  if (out.type === "object" && out.properties && !s["x-kubernetes-preserve-unknown-fields"] && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

/** CRD fixtures by the apiVersion/kind they define (the served, stored version). */
const CRDS: Record<string, string> = {
  "helm.cattle.io/v1/HelmChart": "crd-helm-controller-0.16.13-helmcharts.yaml",
  "helm.cattle.io/v1/HelmChartConfig": "crd-helm-controller-0.16.13-helmchartconfigs.yaml",
  "elasticsearch.k8s.elastic.co/v1/Elasticsearch": "crd-eck-3.5.0-elasticsearches.yaml",
  "kibana.k8s.elastic.co/v1/Kibana": "crd-eck-3.5.0-kibanas.yaml",
  "kafka.strimzi.io/v1/Kafka": "crd-strimzi-1.2.0-kafkas.yaml",
  "kafka.strimzi.io/v1/KafkaNodePool": "crd-strimzi-1.2.0-kafkanodepools.yaml",
};
const crdAjv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
const crdValidators = new Map<string, Validate>();
function crdValidator(gvk: string) {
  let v = crdValidators.get(gvk);
  if (v) return v;
  const file = CRDS[gvk];
  assert.ok(file, `no CRD fixture for ${gvk}: keep its CRD in test/fixtures/charts`);
  const crd = parseAllDocuments(fixture(file)).map((d) => d.toJS() as Any).find((d) => d?.kind === "CustomResourceDefinition")!;
  const [group, version] = [gvk.split("/")[0], gvk.split("/")[1]];
  assert.equal(crd.spec.group, group, file);
  assert.equal(crd.spec.names.kind, gvk.split("/")[2], file);
  const ver = crd.spec.versions.find((x: Any) => x.name === version);
  assert.ok(ver?.served, `${file} serves ${version}`);
  v = crdAjv.compile(jsonSchemaOf(ver.schema.openAPIV3Schema));
  crdValidators.set(gvk, v);
  return v;
}
function crdErrors(obj: Any): string[] {
  const v = crdValidator(`${obj.apiVersion}/${obj.kind}`);
  return v(obj) ? [] : (v.errors ?? []).map((e: { instancePath: string; message?: string; params?: Any }) => `${e.instancePath} ${e.message}${e.params && "additionalProperty" in e.params ? ` (${e.params.additionalProperty})` : ""}`);
}
const BUILT_IN = new Set(["v1/Namespace", "v1/Secret", "v1/Service", "v1/PersistentVolumeClaim", "storage.k8s.io/v1/StorageClass", "networking.k8s.io/v1/Ingress"]);

test("custom resources: every HelmChart, HelmChartConfig, Elasticsearch, Kibana, Kafka and KafkaNodePool fits its CRD (seed and examples)", () => {
  const seen = new Set<string>();
  for (const [name, ctx] of contexts) {
    for (const { file, obj } of renderedObjects(ctx)) {
      const gvk = `${obj.apiVersion}/${obj.kind}`;
      if (BUILT_IN.has(gvk)) continue; // kubernetes-models validates these (render.test.ts)
      seen.add(gvk);
      assert.deepEqual(crdErrors(obj), [], `${name} ${file} ${obj.kind}/${obj.metadata?.name}`);
    }
  }
  assert.deepEqual([...seen].sort(), Object.keys(CRDS).sort(), "every custom kind rendered, every CRD used");
});

test("custom resources: the CRD check refuses a misspelt field, a wrong type and a missing required field", () => {
  const [es] = byKind(seed, "Elasticsearch");
  const [pool] = byKind(seed, "KafkaNodePool");
  const [hc] = byKind(seed, "HelmChart");
  const [hcc] = byKind(seed, "HelmChartConfig");
  const bad = (o: Any, edit: (x: Any) => void) => {
    const c = structuredClone(o);
    edit(c);
    return crdErrors(c);
  };
  assert.ok(bad(es, (x) => (x.spec.nodeSets[0].cout = 3)).some((e) => /cout/.test(e)), "bad(es, (x) => (x.spec.nodeSets[0].cout = 3)).some((e) => /cout/.test(e))");
  assert.ok(bad(es, (x) => (x.spec.nodeSets[0].count = "three")).length > 0, "bad(es, (x) => (x.spec.nodeSets[0].count = \"three\")).length > 0");
  assert.ok(bad(es, (x) => delete x.spec.nodeSets[0].name).some((e) => /name/.test(e)), "bad(es, (x) => delete x.spec.nodeSets[0].name).some((e) => /name/.test(e))");
  assert.ok(bad(pool, (x) => (x.spec.roles = ["controller", "brooker"])).length > 0, "bad(pool, (x) => (x.spec.roles = [\"controller\", \"brooker\"])).length > 0");
  assert.ok(bad(pool, (x) => (x.spec.storage.volumes[0].storageClass = "longhorn")).some((e) => /storageClass/.test(e)), "Strimzi's key is class");
  assert.ok(bad(hc, (x) => (x.spec.valuesContnet = "")).some((e) => /valuesContnet/.test(e)), "bad(hc, (x) => (x.spec.valuesContnet = \"\")).some((e) => /valuesContnet/.test(e))");
  assert.ok(bad(hcc, (x) => (x.spec.values = "not an object")).length > 0, "bad(hcc, (x) => (x.spec.values = \"not an object\")).length > 0");
});

// --- chart values against the pinned charts -------------------------------------------

/** Fixtures of each pinned chart version: values.yaml, the keys its templates read, its values.schema.json. */
function chartFixture(chart: string, version: string): { values: Any; templateKeys: Set<string>; schema?: Any } {
  if (chart === "kured" && version === "6.1.0") {
    // the k3s-review test's fixture (values.yaml of kubereboot/charts, verbatim)
    return { values: parseYaml(readFileSync(join(ROOT, "test/fixtures/kured-values-6.1.0.yaml"), "utf8")), templateKeys: new Set() };
  }
  const base = `${chart}-${version}`;
  const files = readdirSync(FIX);
  assert.ok(files.includes(`${base}.values.yaml`), `no fixture for chart ${chart} ${version}: add test/fixtures/charts/${base}.values.yaml and its template keys (README.md)`);
  const schemaFile = `${base}.values.schema.json`;
  const values = parseYaml(fixture(`${base}.values.yaml`));
  // its node-exporter subchart's values (prometheus-node-exporter-4.47.3.values.yaml), under the
  // subchart's name as Helm merges them: the parent's values.yaml sets only a few of its keys
  if (chart === "prometheus" && version === "27.28.0") values["prometheus-node-exporter"] = merged(parseYaml(fixture("prometheus-node-exporter-4.47.3.values.yaml")), values["prometheus-node-exporter"]);
  return {
    values,
    templateKeys: new Set(fixture(`${base}.template-keys.txt`).split("\n").filter(Boolean)),
    schema: files.includes(schemaFile) ? JSON.parse(fixture(schemaFile)) : undefined,
  };
}

const isMap = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);

/** Paths to the values fmc sets: into maps, not into lists (a list replaces the chart's whole). */
function leafPaths(v: unknown, at: string[] = []): string[][] {
  if (!isMap(v) || Object.keys(v).length === 0) return [at];
  return Object.entries(v).flatMap(([k, x]) => leafPaths(x, [...at, k]));
}
const nodeAt = (v: unknown, path: string[]): { found: boolean; value?: unknown } => {
  let cur: unknown = v;
  for (const p of path) {
    if (!isMap(cur) || !(p in cur)) return { found: false };
    cur = cur[p];
  }
  return { found: true, value: cur };
};

/**
 * Values fmc sets that the chart does not know: a path is known when the chart's
 * values.yaml has it or a template reads it (`.Values.a.b`), or when it lies under a
 * value the chart takes whole (an empty map, a list, null: toYaml'd into a manifest).
 */
function unknownKeys(values: unknown, fx: { values: Any; templateKeys: Set<string> }): string[] {
  const out: string[] = [];
  for (const path of leafPaths(values)) {
    if (fx.templateKeys.has(path.join(".")) || nodeAt(fx.values, path).found) continue;
    const freeForm = path.slice(0, -1).some((_, i) => {
      const prefix = path.slice(0, i + 1);
      const n = nodeAt(fx.values, prefix);
      return n.found && (n.value === null || Array.isArray(n.value) || (isMap(n.value) && Object.keys(n.value).length === 0));
    });
    if (!freeForm) out.push(path.join("."));
  }
  return out;
}

/** Helm's merge of a values file over the chart's defaults: maps merge, anything else replaces. */
function merged(defaults: unknown, over: unknown): unknown {
  if (!isMap(defaults) || !isMap(over)) return over === undefined ? defaults : over;
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(over)) out[k] = merged(defaults[k], v);
  return out;
}

function schemaErrors(schema: Any, values: unknown): string[] {
  const draft2020 = String(schema.$schema ?? "").includes("2020-12");
  const ajv = draft2020 ? new Ajv2020({ strict: false, allErrors: true, validateFormats: false }) : new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const { $schema: _, ...rest } = schema;
  const v = ajv.compile(draft2020 ? schema : rest);
  return v(values) ? [] : (v.errors ?? []).map((e: { instancePath: string; message?: string }) => `${e.instancePath} ${e.message}`);
}

/** The Traefik charts K3s ships: 34.2.x with v1.33.4+k3s1 (the seed's pin), 41.x in the newest K3s lines. */
const K3S_TRAEFIK_CHARTS = ["34.2.0", "41.3.0"];

test("chart values: every value fmc sets is a key of the pinned chart, and fits its values.schema.json where it publishes one", () => {
  for (const [name, ctx] of contexts) {
    for (const hc of byKind(ctx, "HelmChart")) {
      const chart = String(hc.spec.chart).split("/").pop()!;
      const values = parseYaml(hc.spec.valuesContent);
      const fx = chartFixture(chart, hc.spec.version);
      assert.deepEqual(unknownKeys(values, fx), [], `${name}: ${chart} ${hc.spec.version}`);
      if (fx.schema) assert.deepEqual(schemaErrors(fx.schema, merged(fx.values, values)), [], `${name}: ${chart} ${hc.spec.version} values.schema.json`);
    }
    for (const hcc of byKind(ctx, "HelmChartConfig")) {
      assert.equal(hcc.metadata.name, "traefik");
      const values = parseYaml(hcc.spec.valuesContent);
      for (const v of K3S_TRAEFIK_CHARTS) {
        const fx = chartFixture("traefik", v);
        assert.deepEqual(unknownKeys(values, fx), [], `${name}: traefik ${v}`);
        assert.deepEqual(schemaErrors(fx.schema, merged(fx.values, values)), [], `${name}: traefik ${v} values.schema.json`);
      }
    }
  }
});

test("chart values: the checks catch a key the chart does not read and a value of the wrong type", () => {
  const grafana = chartFixture("grafana", "12.11.1");
  const values = chartValues(seed, "grafana") as Any;
  assert.deepEqual(unknownKeys(values, grafana), []);
  // the old Kibana chart's mistake, on Grafana's chart: its key is ingress.ingressClassName
  const wrong = { ...values, ingress: { enabled: true, className: "traefik", hosts: ["grafana.x"] } };
  assert.deepEqual(unknownKeys(wrong, grafana), ["ingress.className"]);
  const redis = chartFixture("redis-ha", "4.39.0");
  assert.deepEqual(unknownKeys({ master: { persistence: { storageClass: "longhorn" } } }, redis), ["master.persistence.storageClass"], "Bitnami's keys mean nothing to redis-ha");
  const traefik = chartFixture("traefik", "34.2.0");
  const hcc = parseYaml(byKind(seed, "HelmChartConfig")[0].spec.valuesContent);
  assert.ok(schemaErrors(traefik.schema, merged(traefik.values, { ...hcc, ports: { web: { nodePort: "30080" } } })).length > 0, "a NodePort as a string");
  assert.ok(schemaErrors(traefik.schema, merged(traefik.values, { ...hcc, ingressClass: { enabled: true, default: true } })).length > 0, "ingressClass takes no unknown keys");
});

// --- retired sources --------------------------------------------------------------------

/** Image references a values tree names: repository (with registry and tag) maps, image strings, Strimzi's default registry. */
function imagesIn(v: unknown, key = ""): string[] {
  if (typeof v === "string") return key === "image" && /^[a-z0-9.-]+(:\d+)?\/[a-z0-9._/-]+/.test(v) ? [v] : [];
  if (Array.isArray(v)) return v.flatMap((x) => imagesIn(x));
  if (!isMap(v)) return [];
  const own: string[] = [];
  if (typeof v.repository === "string" && v.repository) own.push(`${typeof v.registry === "string" && v.registry ? `${v.registry}/` : ""}${v.repository}`);
  if (typeof v.defaultImageRegistry === "string" && typeof v.defaultImageRepository === "string") own.push(`${v.defaultImageRegistry}/${v.defaultImageRepository}/operator`);
  return [...own, ...Object.entries(v).flatMap(([k, x]) => imagesIn(x, k))];
}

/** What a rendered cluster installs from retired sources: charts, the images fmc's values name, the images the pinned charts default to. */
function retiredIn(objects: Any[]): string[] {
  const out: string[] = [];
  for (const o of objects) {
    if (o.kind !== "HelmChart" && o.kind !== "HelmChartConfig") continue;
    const values = parseYaml(o.spec.valuesContent);
    const images = imagesIn(values);
    if (o.kind === "HelmChart") {
      const chart = String(o.spec.chart);
      const name = chart.split("/").pop()!;
      const repo = o.spec.repo ?? chart.slice(0, chart.length - name.length - 1);
      const r = retiredChart(repo, name);
      if (r) out.push(`chart ${repo} ${name}: ${r.since}`);
      const fx = (() => {
        try {
          return chartFixture(name, o.spec.version);
        } catch {
          return undefined; // a chart without a fixture is refused by the values test
        }
      })();
      if (fx) images.push(...imagesIn(fx.values));
    }
    for (const img of images) {
      const r = retiredImage(img);
      if (r) out.push(`image ${img}: ${r.since}`);
    }
  }
  return out;
}

test("retired sources: no chart or image the seed and the examples pin comes from one", () => {
  for (const [name, ctx] of contexts) assert.deepEqual(retiredIn(renderedObjects(ctx).map((o) => o.obj)), [], name);
  // the scan sees the images: each pinned chart's defaults name some (Strimzi's through its default registry)
  for (const hc of byKind(seed, "HelmChart")) {
    const name = String(hc.spec.chart).split("/").pop()!;
    assert.ok(imagesIn(chartFixture(name, hc.spec.version).values).length > 0, `${name}: no image found in its values`);
  }
  assert.ok(imagesIn(chartFixture("redis-ha", "4.39.0").values).some((i) => normalImage(i) === "public.ecr.aws/docker/library/redis"), "redis-ha runs the official redis image");
});

test("retired sources: the old pins and their images are caught, by the test's scan and by fmc validate", () => {
  const old = [
    { repo: "oci://registry-1.docker.io/bitnamicharts", chart: "redis", version: "21.2.13" },
    { repo: "oci://registry-1.docker.io/bitnamicharts", chart: "kafka", version: "32.3.5" },
    { repo: "https://kubernetes.github.io/ingress-nginx", chart: "ingress-nginx", version: "4.13.0" },
    { repo: "https://helm.elastic.co", chart: "elasticsearch", version: "8.5.1" },
    { repo: "https://helm.elastic.co", chart: "kibana", version: "8.5.1" },
    { repo: "https://grafana.github.io/helm-charts", chart: "grafana", version: "9.3.0" },
  ];
  for (const o of old) {
    const objects = [...renderedObjects(seed).map((x) => x.obj), { apiVersion: "helm.cattle.io/v1", kind: "HelmChart", metadata: { name: o.chart, namespace: "kube-system" }, spec: { chart: o.repo.startsWith("oci://") ? `${o.repo}/${o.chart}` : o.chart, ...(o.repo.startsWith("oci://") ? {} : { repo: o.repo }), version: o.version, valuesContent: "{}\n" } }];
    assert.equal(retiredIn(objects).length, 1, `${o.repo} ${o.chart}`);
  }
  // ECK's chart comes from the same repository as the retired stack charts: only those are retired
  assert.equal(retiredChart("https://helm.elastic.co", "eck-operator"), undefined);
  // images, as Bitnami's and ingress-nginx's charts name them
  const bitnamiValues = { image: { registry: "docker.io", repository: "bitnami/redis", tag: "8.0.2-debian-12-r3" } };
  assert.deepEqual(imagesIn(bitnamiValues).map((i) => retiredImage(i)?.since), ["2025-08-28"]);
  assert.equal(retiredImage("bitnamilegacy/kafka:4.0.0")?.since, "2025-08-28");
  assert.equal(retiredImage("registry.k8s.io/ingress-nginx/controller:v1.13.0")?.since, "2026-03");
  assert.equal(retiredImage("redis:8.8.0-alpine"), undefined);
  assert.equal(normalImage("redis:8.8.0-alpine"), "docker.io/library/redis:8.8.0-alpine");
  // fmc validate refuses an enabled service pinned to a retired source, and says what to use
  const bitnamiRedis = SEED_YAML.replace("repo: https://dandydeveloper.github.io/charts, chart: redis-ha", "repo: oci://registry-1.docker.io/bitnamicharts, chart: redis-ha");
  const oldGrafana = SEED_YAML.replace("repo: https://grafana-community.github.io/helm-charts", "repo: https://grafana.github.io/helm-charts");
  for (const [yaml, path] of [[bitnamiRedis, "services.redis.repo"], [oldGrafana, "services.grafana.repo"]] as const) {
    assert.notEqual(yaml, SEED_YAML);
    const problems = loadSpec(yaml).problems;
    assert.ok(problems.some((p) => p.severity === "error" && p.path === path && /retired/.test(p.message) && /use /.test(p.message)), JSON.stringify(problems));
  }
  // disabled, it installs nothing: not an error
  assert.deepEqual(loadSpec(bitnamiRedis.replace("redis:         { repo", "redis:         { enabled: false, repo")).problems.filter((p) => p.severity === "error"), []);
  // the old chart names are refused for the services whose values are written for their replacements
  const bitnamiKafka = SEED_YAML.replace("chart: strimzi-kafka-operator", "chart: kafka");
  assert.ok(loadSpec(bitnamiKafka).problems.some((p) => p.path === "services.kafka.chart"), "loadSpec(bitnamiKafka).problems.some((p) => p.path === \"services.kafka.chart\")");
  // each entry says since when, where it was announced, and what instead
  for (const s of RETIRED_SOURCES) assert.ok(/^\d{4}-\d{2}(-\d{2})?$/.test(s.since) && s.see.startsWith("https://") && s.instead && (s.charts || s.images), s.what);
});

// --- the services themselves ---------------------------------------------------------------

test("ingress: K3s's packaged Traefik stays enabled, a DaemonSet behind fmc's NodePort Service that HAProxy forwards to", () => {
  const [hcc] = byKind(seed, "HelmChartConfig");
  assert.deepEqual(hcc.metadata, { name: "traefik", namespace: "kube-system" }, "K3s's HelmChart is traefik in kube-system");
  const v = parseYaml(hcc.spec.valuesContent);
  assert.equal(v.deployment.kind, "DaemonSet");
  assert.equal(v.service.enabled, false, "the chart's Service (whose values changed shape in chart 40) is replaced");
  // X-Forwarded-* (set by the edge) trusted from the load balancers only
  assert.deepEqual(v.ports.web.forwardedHeaders.trustedIPs, seed.topo.withRole("loadbalancer").map((h) => `${h.address}/32`));
  assert.deepEqual(v.ports.websecure.forwardedHeaders, v.ports.web.forwardedHeaders);
  const svc = byKind(seed, "Service").find((s) => s.metadata.name === "traefik-nodeports");
  const np = seed.spec.k3s.ingressNodePorts;
  assert.equal(svc.spec.type, "NodePort");
  assert.equal(svc.spec.externalTrafficPolicy, "Local");
  assert.deepEqual(svc.spec.ports.map((p: Any) => [p.nodePort, p.targetPort]), [[np.http, "web"], [np.https, "websecure"]]);
  // the chart's pod selector: traefik.labelselector, instance "<release>-<namespace>" (traefik/templates/_helpers.tpl, 34.2.0 and 41.3.0 alike)
  assert.deepEqual(svc.spec.selector, { "app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-kube-system" });
  // the container ports it targets are the chart's port names
  for (const ver of K3S_TRAEFIK_CHARTS) for (const p of ["web", "websecure"]) assert.ok(isMap(chartFixture("traefik", ver).values.ports[p]), `${ver} has port ${p}`);
  const haproxy = renderAll(seed).find((a) => a.path.endsWith("haproxy.cfg"))!.content;
  for (const b of seed.topo.ingressBackends) for (const p of [np.http, np.https]) assert.ok(haproxy.includes(`${b.address}:${p}`), `HAProxy forwards to ${b.name}:${p}`);
  const disabled = (ctx: ClusterContext) => parseYaml(renderAll(ctx).find((a) => a.path === "k3s/master1/config.yaml")!.content).disable as string[];
  assert.ok(!disabled(seed).includes("traefik"), "!disabled(seed).includes(\"traefik\")");
  assert.ok(!renderAll(seed).some((a) => a.content.includes("ingress-nginx")), "!renderAll(seed).some((a) => a.content.includes(\"ingress-nginx\"))");
  // the Grafana and Kibana ingresses use its class
  assert.equal(parseYaml(byKind(seed, "HelmChart").find((h) => h.metadata.name === "grafana").spec.valuesContent).ingress.ingressClassName, "traefik");
  assert.equal(byKind(seed, "Ingress").find((i) => i.metadata.name === "kibana").spec.ingressClassName, "traefik");
  // ingress off: K3s's default list disables Traefik again, and nothing configures it
  const off = contextFor(SEED_YAML.replace("ingress:       { enabled: true }", "ingress:       { enabled: false }"));
  assert.ok(disabled(off).includes("traefik"), "disabled(off).includes(\"traefik\")");
  assert.deepEqual(byKind(off, "HelmChartConfig"), []);
  assert.deepEqual(byKind(off, "Service"), []);
  // a spec that disables Traefik itself while the ingress is on is refused
  const both = SEED_YAML.replace("disable: [servicelb]", "disable: [traefik, servicelb]");
  assert.ok(loadSpec(both).problems.some((p) => p.severity === "error" && p.path === "k3s.disable" && /services\.ingress/.test(p.message)), "loadSpec(both).problems.some((p) => p.severity === \"error\" && p.path === \"k3s.disabl...");
});

test("Elasticsearch and Kibana by ECK: no password in any HelmChart, the elastic user from a Secret, TLS from ECK", () => {
  for (const [name, ctx] of contexts) {
    for (const o of renderedObjects(ctx).filter((x) => x.obj.kind === "HelmChart" || x.obj.kind === "HelmChartConfig")) {
      assert.deepEqual(ctx.secrets.leaksInto(o.obj.spec.valuesContent), [], `${name} ${o.file}`);
    }
  }
  const ns = seed.spec.services.elasticsearch.namespace;
  const [es] = byKind(seed, "Elasticsearch");
  const [kb] = byKind(seed, "Kibana");
  assert.equal(es.spec.version, seed.spec.services.elasticsearch.stackVersion);
  assert.equal(kb.spec.version, es.spec.version);
  assert.equal(kb.spec.elasticsearchRef.name, es.metadata.name);
  const secret = byKind(seed, "Secret").find((s) => s.metadata.name === es.spec.auth.fileRealm[0].secretName);
  assert.ok(secret, "the file realm's Secret is rendered");
  assert.equal(secret.metadata.namespace, ns);
  assert.equal(secret.type, "kubernetes.io/basic-auth");
  assert.deepEqual([secret.stringData.username, secret.stringData.roles], ["elastic", "superuser"]);
  assert.equal(secret.stringData.password, seed.secrets.get("elastic"));
  assert.ok(renderAll(seed).find((a) => a.path === "kubernetes/30-secrets.yaml")!.secret, "the file holding it is marked secret");
  // Fluent Bit: the same credentials, ECK's CA secret and HTTP service for that resource name
  const fb = parseYaml(byKind(seed, "HelmChart").find((h) => h.metadata.name === "fluent-bit").spec.valuesContent);
  assert.deepEqual(fb.env.map((e: Any) => e.valueFrom.secretKeyRef.name), [secret.metadata.name, secret.metadata.name]);
  assert.equal(fb.extraVolumes[0].secret.secretName, `${es.metadata.name}-es-http-certs-public`);
  assert.match(fb.config.outputs, new RegExp(`Host ${es.metadata.name}-es-http\\.${ns}\\.svc\\n`));
  assert.match(fb.config.outputs, /tls\.verify On/);
  // the Kibana ingress reaches ECK's Kibana service
  const ing = byKind(seed, "Ingress").find((i) => i.metadata.name === "kibana");
  assert.equal(ing.spec.rules[0].host, `kibana.${seed.spec.domain}`);
  assert.deepEqual(ing.spec.rules[0].http.paths[0].backend.service, { name: `${kb.metadata.name}-kb-http`, port: { number: 5601 } });
  // the CRs come after the operator's chart, in a file of their own that K3s retries until the CRDs exist
  const files = renderAll(seed).map((a) => a.path).filter((p) => p.startsWith("kubernetes/"));
  assert.ok(files.indexOf("kubernetes/70-elasticsearch.yaml") > files.indexOf("kubernetes/50-helmchart-eck-operator.yaml"), "files.indexOf(\"kubernetes/70-elasticsearch.yaml\") > files.indexOf(\"kubernetes/50-hel...");
  assert.ok(renderedObjects(seed).filter((o) => o.file === "kubernetes/70-elasticsearch.yaml").every((o) => o.obj.kind === "Elasticsearch" || o.obj.kind === "Kibana"), "renderedObjects(seed).filter((o) => o.file === \"kubernetes/70-elasticsearch.yaml\").ev...");
  // Fluent Bit in another namespace could not read those Secrets; Kibana without Elasticsearch has nothing to show
  const otherNs = SEED_YAML.replace("chart: fluent-bit, version: 0.50.0, namespace: logging", "chart: fluent-bit, version: 0.50.0, namespace: monitoring");
  assert.ok(loadSpec(otherNs).problems.some((p) => p.path === "services.fluentBit.namespace"), "loadSpec(otherNs).problems.some((p) => p.path === \"services.fluentBit.namespace\")");
  const noEs = SEED_YAML.replace("elasticsearch: { repo", "elasticsearch: { enabled: false, repo");
  assert.ok(loadSpec(noEs).problems.some((p) => p.path === "services.kibana.enabled"), "loadSpec(noEs).problems.some((p) => p.path === \"services.kibana.enabled\")");
});

test("Redis (redis-ha) and Kafka (Strimzi): failover-capable, pinned, and the volumes Longhorn was counted for", () => {
  const values = parseYaml(byKind(seed, "HelmChart").find((h) => h.metadata.name === "redis-ha").spec.valuesContent);
  assert.deepEqual([values.auth, values.existingSecret, values.authKey], [true, "redis-auth", "password"]);
  assert.equal(values.sentinel.existingSecret, "redis-auth");
  const redisAuth = byKind(seed, "Secret").find((s) => s.metadata.name === "redis-auth");
  assert.ok(redisAuth.stringData[values.authKey], "the key the chart reads exists");
  assert.equal(values.hardAntiAffinity, true, "three agents: one Redis pod each");
  const claims = Object.fromEntries(longhornClaims(seed.spec).map((c) => [c.service, c]));
  assert.equal(claims.redis!.count, values.replicas);
  // counted at the replicas of the class it is rendered on: redis-ha copies itself, on Longhorn's 1-replica class
  assert.equal(values.persistentVolume.storageClass, "longhorn-single");
  assert.equal(claims.redis!.replicas, 1);
  assert.equal(claims.prometheus!.replicas, 2);
  assert.equal(`${claims.redis!.sizeGiB}Gi`, values.persistentVolume.size);
  const [pool] = byKind(seed, "KafkaNodePool");
  const [kafka] = byKind(seed, "Kafka");
  assert.equal(pool.metadata.labels["strimzi.io/cluster"], kafka.metadata.name);
  assert.deepEqual(pool.spec.roles, ["controller", "broker"], "KRaft: no ZooKeeper");
  assert.equal(pool.spec.storage.volumes[0].kraftMetadata, "shared");
  assert.equal(claims.kafka!.count, pool.spec.replicas);
  assert.equal(pool.spec.storage.volumes[0].size, `${claims.kafka!.sizeGiB}Gi`);
  // on Longhorn's 1-replica class: Kafka keeps three copies itself
  const [oneReplica] = byKind(seed, "StorageClass").filter((c) => c.provisioner === "driver.longhorn.io" && c.parameters.numberOfReplicas === "1");
  assert.equal(pool.spec.storage.volumes[0].class, oneReplica.metadata.name);
  assert.equal(kafka.spec.kafka.version, seed.spec.services.kafka.kafkaVersion);
  assert.equal(kafka.spec.kafka.config["min.insync.replicas"], 2);
  const [es] = byKind(seed, "Elasticsearch");
  assert.equal(claims.elasticsearch!.count, es.spec.nodeSets[0].count);
  assert.equal(es.spec.nodeSets[0].volumeClaimTemplates[0].spec.resources.requests.storage, `${claims.elasticsearch!.sizeGiB}Gi`);
  // one node for workloads (the single-server example): Redis pods may share it
  const single = examples.find(([d]) => d === "single-server")![1];
  assert.equal(parseYaml(byKind(single, "HelmChart").find((h) => h.metadata.name === "redis-ha").spec.valuesContent).hardAntiAffinity, false);
});

test("manifests: one file per HelmChart, namespaces for every service that has one", () => {
  const m = manifests(seed);
  const namespaces = new Set(m.find((x) => x.file === "00-namespaces.yaml")!.objects.map((o) => (o as Any).toJSON().metadata.name));
  for (const { obj } of renderedObjects(seed)) {
    const ns = obj.kind === "HelmChart" ? obj.spec.targetNamespace : obj.metadata.namespace;
    if (ns && ns !== "kube-system" && ns !== "default") assert.ok(namespaces.has(ns), `${obj.kind}/${obj.metadata.name} in ${ns}`);
  }
});

// --- node_exporter ------------------------------------------------------------------------

const pc: PhaseContext = { render: seed, mask: (t) => seed.secrets.mask(t), loginUser: () => "root" };
const OS = {
  debian: ["ID=debian", 'VERSION_ID="12"'],
  alma: ['ID="almalinux"', 'ID_LIKE="rhel centos fedora"', 'VERSION_ID="9.4"'],
};
/** Facts as the fact script prints them (systemctl show blocks, dpkg-query/rpm lines), parsed by the real parser. */
function factsOf(os: string[], o: { packages?: string[]; units?: Record<string, [string, string]> } = {}): HostFacts {
  const units = Object.entries(o.units ?? {}).flatMap(([id, [active, enabled]]) => [`Id=${id}`, `ActiveState=${active}`, `UnitFileState=${enabled}`, ""]);
  return parseFacts("h", ["@os", ...os, "@hostname", "h", "@units", ...units, "@packages", ...(o.packages ?? []).map((p) => `${p} install ok installed`), "@end", ""].join("\n"));
}
const exporterChanges = (host: string, facts: HostFacts) => base.plan(pc, seed.topo.host(host), facts).filter((c) => /node.exporter|node_exporter/.test(c.title));

test("node_exporter: exactly on the hosts Prometheus scrapes by address", () => {
  const job = staticScrapeJobs(seed).find((j) => j.job_name === "node-exporter") as Any;
  const targets = job.static_configs.map((s: Any) => s.labels.host).sort();
  assert.deepEqual(targets, nodeExporterHosts(seed.spec).map((h) => h.name).sort());
  assert.deepEqual(targets, ["firewall1", "freeipa1", "loadbalancer1", "loadbalancer2", "postgresql1", "traefik1", "traefik2"]);
  for (const h of seed.spec.hosts) {
    const os = h.os === "almalinux" ? OS.alma : OS.debian;
    const planned = h.os === "flatcar" ? [] : exporterChanges(h.name, factsOf(os));
    assert.equal(planned.length > 0, targets.includes(h.name), `${h.name}: ${planned.map((c) => c.title).join("; ")}`);
  }
  for (const h of ["freeipa1", "postgresql1", "loadbalancer1", "traefik1"]) assert.ok(firewalldOpenings(seed.spec, seed.topo.host(h)).ports.includes("9100/tcp"), h);
  assert.ok(!firewalldOpenings(seed.spec, seed.topo.host("master1")).ports.includes("9100/tcp"), "!firewalldOpenings(seed.spec, seed.topo.host(\"master1\")).ports.includes(\"9100/tcp\")");
  // no Prometheus, no scrapes and no exporters
  const off = contextFor(SEED_YAML.replace("prometheus:    { repo", "prometheus:    { enabled: false, repo").replace("grafana:       { repo", "grafana:       { enabled: false, repo"));
  assert.deepEqual(nodeExporterHosts(off.spec), []);
  assert.deepEqual(base.plan({ ...pc, render: off }, off.topo.host("loadbalancer1"), factsOf(OS.debian)).filter((c) => /node.exporter/.test(c.title)), []);
});

test("node_exporter on Debian: the package, then its unit enabled and running; nothing once it runs", () => {
  const facts = base.facts(pc, seed.topo.host("firewall1"));
  assert.ok(facts.packages?.has("prometheus-node-exporter") && facts.units?.has("prometheus-node-exporter.service"), "read with the facts");
  const fresh = exporterChanges("firewall1", factsOf(OS.debian));
  assert.deepEqual(fresh.map((c) => c.title), ["install prometheus-node-exporter", "enable, start prometheus-node-exporter.service"]);
  assert.ok(fresh[0]!.refreshesFacts, "the plan is made again after the install");
  assert.match(fresh[0]!.commands[0]!.shell, /apt-get .*install -y --no-install-recommends prometheus-node-exporter/);
  const installed = factsOf(OS.debian, { packages: ["prometheus-node-exporter"], units: { "prometheus-node-exporter.service": ["inactive", "disabled"] } });
  assert.deepEqual(exporterChanges("firewall1", installed).map((c) => c.commands.map((x) => x.display)), [["systemctl enable prometheus-node-exporter.service", "systemctl start prometheus-node-exporter.service"]]);
  const running = factsOf(OS.debian, { packages: ["prometheus-node-exporter"], units: { "prometheus-node-exporter.service": ["active", "enabled"] } });
  assert.deepEqual(exporterChanges("firewall1", running), []);
  assert.deepEqual(NODE_EXPORTER["debian-like"].packages, ["prometheus-node-exporter"]);
});

test("node_exporter on AlmaLinux: EPEL's package, then whichever unit it brought; an install without a unit is an error", () => {
  const fresh = exporterChanges("loadbalancer1", factsOf(OS.alma));
  assert.equal(fresh[0]!.title, "install node_exporter (EPEL)");
  assert.match(fresh[0]!.commands[0]!.shell, /^dnf install -y epel-release && \{ dnf install -y node-exporter \|\| dnf install -y golang-github-prometheus-node-exporter; \}$/);
  assert.ok(fresh[0]!.refreshesFacts, "fresh[0]!.refreshesFacts");
  for (const [pkg, unit] of [["node-exporter", "prometheus-node-exporter.service"], ["golang-github-prometheus-node-exporter", "node_exporter.service"]] as const) {
    const after = factsOf(OS.alma, { packages: [pkg], units: { [unit]: ["inactive", "disabled"] } });
    assert.deepEqual(exporterChanges("loadbalancer1", after).map((c) => c.commands.map((x) => x.display)), [[`systemctl enable ${unit}`, `systemctl start ${unit}`]], pkg);
  }
  assert.throws(() => exporterChanges("loadbalancer1", factsOf(OS.alma, { packages: ["node-exporter"] })), (e: unknown) => e instanceof FmcError && /none of prometheus-node-exporter\.service, node_exporter\.service/.test(e.message));
});

test("node_exporter: a Flatcar host outside K3s is not scraped, and the plan says why", () => {
  const yaml = SEED_YAML.replace("{ name: postgresql1, roles: [database], os: almalinux", "{ name: postgresql1, roles: [database], os: flatcar");
  assert.notEqual(yaml, SEED_YAML);
  const ctx = contextFor(yaml);
  assert.ok(!nodeExporterHosts(ctx.spec).some((h) => h.name === "postgresql1"), "!nodeExporterHosts(ctx.spec).some((h) => h.name === \"postgresql1\")");
  assert.ok(base.warnings!({ ...pc, render: ctx }).some((w) => /^postgresql1 runs Flatcar/.test(w)), "base.warnings!({ ...pc, render: ctx }).some((w) => /^postgresql1 runs Flatcar/.test(w))");
  assert.deepEqual(base.warnings!(pc), []);
});

// --- the diagram -------------------------------------------------------------------------------

test("topology.svg: every host drawn once (storage1, a K3s agent with the storage role, too), its other roles named", () => {
  const titles = (ctx: ClusterContext) => [...diagramSvg(ctx).matchAll(/font-weight="bold">([^<]+)<\/text>/g)].map((m) => m[1]!);
  for (const [name, ctx] of contexts) {
    const drawn = titles(ctx);
    for (const h of ctx.spec.hosts) assert.equal(drawn.filter((t) => t === h.name).length, 1, `${name}: ${h.name}`);
  }
  const agents = diagramRows(seed).find((r) => r.label === "k3s agents")!;
  assert.equal(agents.boxes.find((b) => b.title === "storage1")!.detail, "10.17.4.27 (storage)");
  // a host with two row roles (a load balancer that is a K3s agent too) is drawn once as well, in the upper row
  const single = readFileSync(join(ROOT, "examples/single-server/cluster.yaml"), "utf8");
  const combined = contextFor(single.replace("{ name: agent1, roles: [k3s-agent]", "{ name: agent1, roles: [k3s-agent, loadbalancer]"));
  assert.equal(titles(combined).filter((t) => t === "agent1").length, 1);
  assert.equal(diagramRows(combined).find((r) => r.label === "load balancers")!.boxes.find((b) => b.title === "agent1")!.detail, "10.20.1.20 (k3s-agent)");
});
