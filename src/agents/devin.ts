/** Placeholder until the Devin adapter lands (a helper is writing it). */
import type { HostedAgent } from "./types.ts";

export const devin: HostedAgent | null = null;
