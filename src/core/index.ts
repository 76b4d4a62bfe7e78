export * from "./errors.ts";
export type * from "./domain.ts";
export type * from "./store.ts";
export type * from "./provider.ts";
export type * from "./layers.ts";
export * from "./run.ts";
export * from "./signals.ts";
export type * from "./identity.ts";
export * from "./once.ts";
