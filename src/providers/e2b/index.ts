/**
 * The `e2b` provider kind: sessions on E2B's sandboxes through the official SDK (provider.ts),
 * with E2B's network controls keeping Paddock's gateway the only way out. Tested against
 * Paddock's own E2B-compatible front end (test/providers/e2b.paddock-as-fake-e2b.test.ts).
 */
import type { ProviderDriver } from "../../core/index.ts";
import { invalid } from "../../core/index.ts";
import { E2bProvider } from "./provider.ts";
import { parseE2bSettings, type E2bSettings } from "./settings.ts";

export { E2bProvider } from "./provider.ts";
export { egressSettings } from "./spec.ts";
export { fromE2b } from "./errors.ts";
export { E2bSettingsSchema, parseE2bSettings, type E2bSettings } from "./settings.ts";

export const e2bDriver: ProviderDriver<E2bSettings> = {
  kind: "e2b",
  parseSettings: parseE2bSettings,
  credentials: ["apiKey"],
  async create(instance, deps) {
    const apiKey = instance.credentials.apiKey ?? "";
    // An empty key would make the SDK fall back to E2B_API_KEY from the server's environment.
    if (apiKey.trim() === "") throw invalid(`provider ${JSON.stringify(instance.name)} (e2b) has no API key: store it as the vault secret provider/${instance.name}/apiKey`);
    deps.log(`provider ${instance.name}: e2b at ${instance.settings.apiUrl ?? `https://api.${instance.settings.domain}`}`);
    return new E2bProvider(instance.name, instance.settings, apiKey, deps);
  },
};
