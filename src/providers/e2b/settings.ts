/**
 * An E2B provider instance's settings (installation config, e.g. `e2b: { kind: e2b, settings: … }`)
 * and its one credential, `apiKey` (vault secret `provider/<instance>/apiKey`).
 */
import { z } from "zod";
import { invalid } from "../../core/index.ts";

/** E2B's own limit on a sandbox's lifetime (Pro accounts; Hobby: 1 hour). */
const MAX_TIMEOUT_MS = 24 * 3600 * 1000;

const url = z.url({ protocol: /^https?$/, error: "an http(s) URL" });
const templateName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/, "an E2B template name or id");

export const E2bSettingsSchema = z.strictObject({
  domain: z
    .string()
    .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/, "a DNS domain such as e2b.app")
    .default("e2b.app")
    .describe("E2B's domain: the API is https://api.DOMAIN and a sandbox's port P is https://P-ID.DOMAIN (portUrl). Default e2b.app (E2B's cloud)."),
  apiUrl: url.optional().describe("The control API's base URL when it is not https://api.DOMAIN (a self-hosted E2B, or a test server)."),
  sandboxUrl: url.optional().describe("Where envd (commands, files) is reached when it is not https://49983-ID.DOMAIN: one URL for every sandbox, which is then named in the E2b-Sandbox-Id header."),
  templates: z
    .record(z.string().min(1).max(128), templateName)
    .default({})
    .describe("Paddock template id (SandboxSpec.recipe.templateId) → a prebuilt E2B template that already holds that recipe's install steps. A template not listed starts from `defaultTemplate` and runs its steps at every create."),
  defaultTemplate: templateName.default("base").describe("The E2B template a session starts from when its recipe has no prebuilt template in `templates`. Default base."),
  user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "a user name").default("user").describe("The templates' unprivileged user that sessions run as (E2B's default is user, home /home/user)."),
  timeoutMs: z
    .number()
    .int()
    .min(60_000)
    .max(MAX_TIMEOUT_MS)
    .default(3_600_000)
    .describe("A sandbox's lifetime at E2B, in ms (E2B kills it then, whatever Paddock thinks): at least the longest compute.timeout of the environments routed here. Default 1 hour; at most 24 hours."),
  requestTimeoutMs: z.number().int().min(1_000).max(600_000).default(60_000).describe("How long one API request may take. Default 60 s."),
});

export type E2bSettings = z.infer<typeof E2bSettingsSchema>;

/** Validate settings; throws `invalid_argument` naming every bad field as `settings.<path>: …`. */
export function parseE2bSettings(raw: unknown): E2bSettings {
  const parsed = E2bSettingsSchema.safeParse(raw ?? {});
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, 10).map((i) => `settings${i.path.length ? "." + i.path.join(".") : ""}: ${i.message}`);
  throw invalid(`bad e2b provider settings: ${issues.join("; ")}`, { issues });
}
