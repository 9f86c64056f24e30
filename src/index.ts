// Library entry: everything the CLI does is available as functions.
export { loadSpec, hasErrors } from "./model/load.js";
export { SpecSchema, API_VERSION, ROLES, OS_FAMILIES } from "./model/schema.js";
export type { Spec, SpecInput, Host, Vip, Role } from "./model/schema.js";
export { SEED_YAML } from "./model/seed.js";
export { Topology } from "./model/topology.js";
export { specJsonSchema, specMarkdown } from "./model/jsonschema.js";
export { renderAll, RENDERERS } from "./render/index.js";
export type { Artifact } from "./render/types.js";
export type { ClusterContext } from "./state/context.js";
/** @deprecated the former name of ClusterContext */
export type { ClusterContext as RenderContext } from "./state/context.js";
export { writeArtifacts } from "./render/write.js";
export { requiredSecrets, loadOrCreateSecrets, fixedSecrets, Secrets } from "./state/secrets.js";
export { context, load, InvalidSpec } from "./project.js";
export { FmcError, type Problem } from "./errors.js";
