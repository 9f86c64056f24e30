// JSON that fmc wrote earlier and reads back (secret store, lab state, lab inventory,
// render manifest): parsed against its schema, and anything else turned into the
// caller's coded error, never a stack trace or a half-trusted object.
import type { z } from "zod";
import type { FmcError } from "../errors.js";

export function parseStored<T>(text: string, schema: z.ZodType<T>, refuse: (why: string) => FmcError): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw refuse((e as Error).message);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw refuse(r.error.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(top level)"}: ${i.message}`).join("; "));
  return r.data;
}
