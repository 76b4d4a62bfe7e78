/** Placeholder until this agent's adapter lands (a helper is writing it). */
import type { AgentAdapter } from "./types.ts";

export const cursor: AgentAdapter | null = null;
