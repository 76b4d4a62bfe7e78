import { PaddockError } from "./errors.ts";
import type { Provider, ProviderCapabilities } from "./provider.ts";

/** The one error for "this provider cannot do that": says which provider, what, and what to do instead. */
export function unsupported(provider: Pick<Provider, "name">, what: string, instead?: string): PaddockError {
  return new PaddockError(
    "unavailable",
    `provider ${JSON.stringify(provider.name)} cannot ${what}${instead ? `; ${instead}` : ""}`,
    { provider: provider.name, capability: what },
  );
}

/** Throws `unsupported` unless the provider declares the capability. */
export function requireCapability(provider: Provider, capability: keyof Omit<ProviderCapabilities, "kind" | "isolation">, what: string, instead?: string): void {
  if (!provider.capabilities[capability]) throw unsupported(provider, what, instead);
}
