/**
 * The `daytona` provider box: sessions as Daytona sandboxes through the official `@daytona/sdk`
 * (docs/providers.md, "Daytona").
 */
import type { ProviderDriver } from "../../core/provider.ts";
import { DaytonaProvider } from "./provider.ts";
import { parseDaytonaSettings, type DaytonaSettings } from "./settings.ts";

export const daytonaDriver: ProviderDriver<DaytonaSettings> = {
  kind: "daytona",
  parseSettings: parseDaytonaSettings,
  credentials: ["apiKey"],
  create(instance, deps) {
    return Promise.resolve(new DaytonaProvider({ name: instance.name, settings: instance.settings, apiKey: instance.credentials["apiKey"] ?? "", deps }));
  },
};

export { DaytonaProvider } from "./provider.ts";
export type { DaytonaProviderOptions } from "./provider.ts";
export { parseDaytonaSettings } from "./settings.ts";
export type { DaytonaSettings } from "./settings.ts";
