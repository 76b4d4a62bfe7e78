/**
 * The environment file (`paddock.yml` / `runtime.yml`): its schema, loading, and located errors.
 * This is the box's only public entry; it imports nothing from the rest of `src/`.
 *
 * @example
 * const { spec } = await loadEnvironmentFile("runtime.yml"); // throws ConfigError listing every issue
 * spec.compute.memoryBytes; // 8_000_000_000 for "8GB"
 */
export { ConfigError, formatIssue } from "./issues.ts";
export type { ConfigIssue } from "./issues.ts";
export { loadEnvironmentFile, parseEnvironment, MAX_FILE_BYTES } from "./parse.ts";
export type { ParseResult } from "./parse.ts";
export { createOffThreadParser } from "./offthread.ts";
export type { OffThreadParser, OffThreadParserOptions } from "./offthread.ts";
export { environmentSchema, PERMISSIONS, SECRET_LOCATIONS, BASES, DEFAULT_DEPLOY_COMMANDS, DEFAULT_PROTECTED_BRANCHES } from "./schema.ts";
export type { EnvironmentSpec, Position } from "./schema.ts";
export { parseDuration, parseMemory } from "./units.ts";
export { AGENT_NAMES, RUN_OUTCOMES } from "./agent.ts";
export type { AgentConfig, AgentCheck } from "./agent.ts";
export { TRIGGER_SOURCES, renderPrompt } from "./triggers.ts";
export type { TriggerConfig, TriggerSource } from "./triggers.ts";
