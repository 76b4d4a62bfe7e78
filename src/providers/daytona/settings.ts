/** A `daytona` provider instance's settings (installation config), validated with one located message per problem. */
import { z } from "zod";
import { invalid } from "../../core/errors.ts";

const schema = z
  .object({
    apiUrl: z.url({ protocol: /^https?$/ }).default("https://app.daytona.io/api").describe("Daytona API endpoint (self-hosted Daytona, or a test's fake)"),
    target: z.string().regex(/^[a-z0-9-]{1,32}$/, "a Daytona target (region) such as us or eu").optional().describe("where sandboxes run"),
    image: z.string().min(1).max(256).regex(/^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/, "an image reference such as debian:12").default("debian:12").describe("base image the template recipe is built on"),
    createTimeoutSeconds: z.number().int().min(10).max(3600).default(600).describe("how long a create may take (the first one of a recipe builds its image)"),
    pollIntervalMs: z.number().int().min(20).max(5000).default(100).describe("how often a running command's state and output are read"),
    maxOutputBytes: z.number().int().min(1024).max(2 ** 30).default(64 * 2 ** 20).describe("a command whose output (stdout and stderr together) passes this is ended and its exec fails: Daytona's logs call answers the whole output so far on every poll"),
    maxStdinBytes: z.number().int().min(0).max(256 * 2 ** 20).default(16 * 2 ** 20).describe("largest stdin an exec takes: it is uploaded whole before the command starts"),
    stdinTimeoutMs: z.number().int().min(100).max(600_000).default(30_000).describe("how long an exec waits for its stdin stream to end before refusing it (the command starts only once stdin is whole)"),
    previewTtlSeconds: z.number().int().min(60).max(86_400).default(3600).describe("lifetime of the signed preview URL portUrl answers"),
  })
  .strict();

export type DaytonaSettings = z.infer<typeof schema>;

export function parseDaytonaSettings(raw: unknown): DaytonaSettings {
  const r = schema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => `settings${i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("")}: ${i.message}`);
  throw invalid(`daytona provider: ${lines.join("; ")}`, { issues: lines });
}
