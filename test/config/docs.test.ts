// docs/config.md stays true to the code: every schema key is documented, every field has a
// description, and the error example shows what the parser really prints.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { z } from "zod";
import { environmentSchema, formatIssue, parseEnvironment } from "../../src/config/index.ts";

const docs = await readFile(new URL("../../docs/config.md", import.meta.url), "utf8");

/** Every field of every mapping in the schema, as [documented path, schema]. */
function fields(schema: z.core.$ZodType, at: string): [string, z.ZodType][] {
  const s = schema as z.ZodType;
  if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) return fields(s.unwrap() as z.ZodType, at);
  if (s instanceof z.ZodPipe) return fields(s.in as z.ZodType, at);
  if (s instanceof z.ZodUnion) return (s.options as z.ZodType[]).flatMap((o) => fields(o, at));
  if (s instanceof z.ZodArray) return fields(s.element as z.ZodType, `${at}[]`);
  // Mappings by name: rbac's keys are roles, services' keys are service names.
  if (s instanceof z.ZodRecord) return fields(s.valueType as z.ZodType, `${at}.${at === "rbac" ? "<role>" : "<name>"}`);
  if (!(s instanceof z.ZodObject)) return [];
  return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) => {
    const path = at === "" ? k : `${at}.${k}`;
    return [[path, v] as [string, z.ZodType], ...fields(v, path)];
  });
}

void describe("docs/config.md", () => {
  const all = fields(environmentSchema, "");

  void it("finds the whole schema (guards the walk below)", () => {
    assert.equal(all.length, 66);
  });

  for (const [path, schema] of all) {
    void it(`documents ${path} in the key table, and the schema describes it`, () => {
      assert.ok(docs.includes(`| \`${path}\` |`), `docs/config.md has no row for ${path}`);
      assert.ok((schema.description ?? "").length > 20, `${path} has no .describe() text`);
    });
  }

  void it("shows the real output of its error example", () => {
    const example = /This `runtime.yml`:\n\n```yaml\n([\s\S]*?)```[\s\S]*?```text\n([\s\S]*?)```/.exec(docs);
    assert.ok(example !== null, "error example not found");
    const [, source = "", printed = ""] = example;
    const { issues } = parseEnvironment(source, "runtime.yml");
    assert.equal(issues.map(formatIssue).join("\n"), printed.trimEnd());
  });
});
