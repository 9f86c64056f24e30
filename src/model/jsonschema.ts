// JSON Schema of the spec (for editor completion) and the Markdown reference that
// docs/spec.md is generated from.
import { z } from "zod";
import { SpecSchema } from "./schema.js";

type Json = Record<string, unknown>;

export function specJsonSchema(): Json {
  const schema = z.toJSONSchema(SpecSchema, { io: "input", unrepresentable: "any" }) as Json;
  return { ...schema, $id: "https://fmc.dev/schemas/cluster-v1alpha1.json", title: "FlatcarMicroCloud cluster spec" };
}

function typeOf(s: Json): string {
  if (Array.isArray(s.enum)) return (s.enum as unknown[]).map((v) => JSON.stringify(v)).join(" \\| ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.anyOf)) return (s.anyOf as Json[]).map(typeOf).join(" \\| ");
  if (s.type === "array") return `list of ${typeOf((s.items as Json) ?? {})}`;
  if (s.type === "object" && s.additionalProperties && typeof s.additionalProperties === "object" && !s.properties) return "map";
  return typeof s.type === "string" ? s.type : "any";
}

function cell(v: unknown): string {
  return String(v ?? "").replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** Markdown reference: one table per object, nested objects as their own sections. */
export function specMarkdown(): string {
  const out: string[] = [
    "# Cluster spec reference",
    "",
    "Generated from the JSON Schema (`fmc schema`) by `fmc docs`; do not edit by hand.",
    "Start from `fmc init`, which writes the seed topology with comments.",
    "",
  ];
  const queue: Array<[string, Json]> = [["(top level)", specJsonSchema()]];
  while (queue.length) {
    const [path, schema] = queue.shift()!;
    const props = (schema.properties ?? {}) as Record<string, Json>;
    const required = new Set((schema.required as string[] | undefined) ?? []);
    out.push(`## ${path}`, "", "| key | type | default | description |", "|---|---|---|---|");
    for (const [key, raw] of Object.entries(props)) {
      const prop = raw;
      const def = prop.default === undefined ? (required.has(key) ? "**required**" : "") : `\`${JSON.stringify(prop.default)}\``;
      out.push(`| \`${key}\` | ${typeOf(prop)} | ${cell(def)} | ${cell(prop.description)} |`);
      const child = path === "(top level)" ? key : `${path}.${key}`;
      const item = prop.type === "array" ? (prop.items as Json) : prop;
      if (item && item.type === "object" && item.properties) queue.push([prop.type === "array" ? `${child}[]` : child, item]);
    }
    out.push("");
  }
  return out.join("\n");
}
