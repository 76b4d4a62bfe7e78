/**
 * Loading a routing strategy named in providers.yml (`routing: { strategy: ./my-strategy.mjs }`).
 * The module's default export (or its export named `strategy`) must be a `RoutingStrategy`:
 * `{ name: string, decide(request, candidates) }`. Anything else is refused, saying what was found.
 */
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { PaddockError } from "../../core/index.ts";
import type { RoutingStrategy } from "./types.ts";

const SHAPE = "a RoutingStrategy: export default { name: \"my-strategy\", decide(request, candidates) { return { strategy, order, chosen, reason, candidates } } }";

/** `where` names the setting in errors, e.g. `providers.yml:3:13 routing.strategy`. */
export async function loadStrategy(modulePath: string, baseDir: string, where: string): Promise<RoutingStrategy> {
  const file = isAbsolute(modulePath) ? modulePath : resolve(baseDir, modulePath);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    throw new PaddockError("invalid_argument", `${where}: cannot load routing strategy module ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const candidate = mod["default"] ?? mod["strategy"];
  const problem = shapeProblem(candidate);
  if (problem) throw new PaddockError("invalid_argument", `${where}: ${file} does not export ${SHAPE}; ${problem}`);
  return candidate as RoutingStrategy;
}

function shapeProblem(x: unknown): string | null {
  if (x === undefined) return "it has neither a default export nor one named `strategy`";
  if (typeof x !== "object" || x === null) return `its export is ${x === null ? "null" : typeof x}, not an object`;
  const s = x as { name?: unknown; decide?: unknown };
  if (typeof s.name !== "string" || s.name.trim() === "") return "its `name` is not a non-empty string";
  if (typeof s.decide !== "function") return "its `decide` is not a function";
  return null;
}
