/**
 * Templates on a remote node: the node has its own layer store, and builds a template's layers
 * from `SandboxSpec.recipe` the way the control plane's builder does (src/control/builder.ts): one
 * build sandbox per missing step on top of the layers below it, committed with
 * `stop({ commitAs })`. Layer ids are the same Merkle chain, so a node that has built a step once
 * reuses it for every template sharing that prefix.
 */
import { createHash, randomBytes } from "node:crypto";
import type { ComputeLimits, LayerStore, Provider } from "../core/index.ts";
import { PaddockError, SingleFlight } from "../core/index.ts";
import type { WireSandboxSpec } from "../providers/ec2/index.ts";

/** The builder's layer id (`layerKey` in src/control/builder.ts; test/node/recipe.test.ts checks they agree). */
export function nodeLayerKey(base: string, parent: string | null, command: string): string {
  return createHash("sha256").update(`paddock-layer-v1\n${base}\n${parent ?? "-"}\n${command}`).digest("hex");
}

const TAIL_BYTES = 4096;

export class NodeTemplates {
  private readonly steps = new SingleFlight<void>();

  constructor(
    private readonly local: Provider,
    private readonly layers: LayerStore,
    private readonly log: (line: string) => void,
  ) {}

  /** The layer ids of the recipe's template on this node, building the missing ones. */
  async ensure(recipe: WireSandboxSpec["recipe"], compute: ComputeLimits): Promise<string[]> {
    const ids: string[] = [];
    let parent: string | null = null;
    for (const [index, command] of recipe.steps.entries()) {
      const key = nodeLayerKey(recipe.base, parent, command);
      const below = [...ids];
      if (!(await this.layers.has(key))) await this.steps.run(key, () => this.build(recipe.base, below, index, command, key, compute));
      ids.push(key);
      parent = key;
    }
    return ids;
  }

  private async build(base: WireSandboxSpec["base"], below: string[], index: number, command: string, key: string, compute: ComputeLimits): Promise<void> {
    if (await this.layers.has(key)) return;
    const id = `b-${randomBytes(6).toString("hex")}`;
    const started = Date.now();
    // Build steps get no network on a node (there is no egress path yet): a step that needs one fails here, saying so.
    await this.local.create({ id, mode: "build", base, layers: below, compute, hostname: "build", env: {} });
    let tail = "";
    const keep = (b: Buffer): void => {
      tail = (tail + b.toString()).slice(-TAIL_BYTES);
    };
    let exitCode: number;
    try {
      exitCode = (await this.local.exec(id, { argv: ["/bin/sh", "-c", command], cwd: "/workspace", timeoutMs: 30 * 60_000, onStdout: keep, onStderr: keep })).exitCode;
    } catch (err) {
      await this.local.stop(id);
      throw err;
    }
    if (exitCode !== 0) {
      await this.local.stop(id);
      throw new PaddockError("invalid_argument", `install step ${index + 1} (${JSON.stringify(command)}) failed on the node with exit code ${exitCode} (steps run without network on a remote node)`, {
        step: index, exitCode, lastLines: tail.split("\n").slice(-20),
      });
    }
    await this.local.stop(id, { commitAs: key });
    this.log(`built layer ${key.slice(0, 12)} (step ${index + 1}) in ${Date.now() - started} ms`);
  }
}
