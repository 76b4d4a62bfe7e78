import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { AGENT_PACKAGES, AGENT_ROOT } from "../agents/index.ts";
import type { LayerStore, Provider, SingleFlight, Store, Template } from "../core/index.ts";
import { PaddockError } from "../core/index.ts";
import type { EnvironmentSpec } from "../config/index.ts";
import { formatIssue } from "../config/index.ts";
import { contentDigest } from "./digest.ts";
import type { Egress } from "./egress.ts";
import { composeIssues, seedOf, servicesOf, servicesStepCommand, servicesStepTitle } from "./services.ts";

/**
 * Template builds. Each `install:` step runs in a fresh build sandbox on top of the layers before
 * it, as root of the sandbox's user namespace; what it changed becomes a committed layer. A layer
 * is keyed by the hash of (base, parent layer, command) — a Merkle chain like a container build
 * cache — so an unchanged step on an unchanged parent is reused and re-applying an unchanged file
 * does no work. Each layer also records a digest of its content.
 *
 * An environment with `services:` gets one more step after the install steps: a build sandbox with
 * the services started and ready runs the `seed:` steps, the services are stopped cleanly, and the
 * layer (their data directories, what the seed wrote) is committed like any other.
 */
export type BuildEvent =
  | { type: "step"; index: number; total: number; command: string; status: "cached" | "running" }
  | { type: "output"; index: number; stream: "stdout" | "stderr"; data: string }
  | { type: "step-done"; index: number; exitCode: number; durationMs: number; layerId: string | null; sizeBytes?: number }
  | { type: "done"; templateId: string; durationMs: number }
  | { type: "failed"; message: string; index: number | null; exitCode: number | null; lastLines: string[] };

export interface BuildRequest {
  name: string;
  version: number;
  fileName: string;
  spec: EnvironmentSpec;
  noCache?: boolean;
  onEvent: (e: BuildEvent) => void;
  signal?: AbortSignal;
}

const TAIL_LINES = 20;
/** Messages programs print when they have no network; a failed step that printed one gets a hint. */
const NETWORK_ERROR_HINT =
  " — it looks like it needed the network: install steps reach only the hosts build.network allows (default: any public host), through the egress gateway; see `paddock logs --egress` for what was refused";
const NETWORK_ERROR = /CONNECT tunnel failed|paddock gateway|ENOTFOUND|EAI_AGAIN|getaddrinfo|Temporary failure in name resolution|Could not resolve|Network is unreachable|network is unreachable|ENETUNREACH|Name or service not known|Failed to connect|Connection refused|ECONNREFUSED/;

export function layerKey(base: string, parent: string | null, command: string): string {
  return createHash("sha256").update(`paddock-layer-v1\n${base}\n${parent ?? "-"}\n${command}`).digest("hex");
}

export interface BuildDeps {
  store: Store;
  provider: Provider;
  layers: LayerStore;
  egress: Egress | null;
  /** Build steps in progress, by layer id: two builds that need the same layer at once (two
   * environments sharing their first steps) run it once, the second waiting for the first. */
  steps?: SingleFlight<void>;
  /**
   * A local mirror of agent packages (`DIR/<name>@<version>/`, as scripts/agent-packages.ts makes
   * them): agent steps copy from it instead of asking the npm registry (air-gapped installations,
   * and the tests). Absent: the registry, through the gateway like any install step.
   */
  agentPackages?: string;
}

/** Where a mirrored agent package is bound in its build sandbox (on the tmpfs /run: nothing of it is committed). */
const AGENT_PACKAGE_MOUNT = "/run/paddock/agent-package";

/**
 * The install steps an environment's `agent:` adds, before its own steps: one per agent that runs
 * as a CLI, each installing the pinned package under /opt/paddock/agents/NAME and linking its
 * executable into /usr/local/bin. First, so the layer (keyed by base and package, not by the
 * environment) is shared by every environment on that base: built once per machine.
 */
export function agentSteps(spec: EnvironmentSpec, mirror: string | undefined): { key: string; command: string; title: string; mount: { source: string; target: string } | null }[] {
  const out: { key: string; command: string; title: string; mount: { source: string; target: string } | null }[] = [];
  for (const name of spec.agent?.agents ?? []) {
    const dir = `${AGENT_ROOT}/${name}`;
    const pkg = AGENT_PACKAGES[name];
    if (name === "devin") continue; // hosted: driven from the control plane, nothing in the sandbox
    if (!pkg) {
      // Cursor's CLI is not on npm: its documented installer (cursor.com/install), into the same place.
      out.push({ key: `paddock-agent ${name} cursor.com/install v1`, title: `agent ${name}: Cursor's installer`, mount: null, command: `mkdir -p ${dir} && curl -fsSL https://cursor.com/install | HOME=${dir} bash && ln -sf ${dir}/.local/bin/cursor-agent /usr/local/bin/cursor-agent` });
      continue;
    }
    const link = `mkdir -p /usr/local/bin && ln -sf ${dir}/node_modules/.bin/${pkg.bin} /usr/local/bin/${pkg.bin}`;
    const local = mirror ? join(mirror, `${name}@${pkg.version}`) : null;
    const key = `paddock-agent ${name} ${pkg.npm}@${pkg.version} v1`;
    const title = `agent ${name}: ${pkg.npm}@${pkg.version}`;
    if (local && existsSync(join(local, ".complete")))
      out.push({ key, title, mount: { source: local, target: AGENT_PACKAGE_MOUNT }, command: `mkdir -p ${dir} && cp -a ${AGENT_PACKAGE_MOUNT}/node_modules ${dir}/ && ${link}` });
    else out.push({ key, title, mount: null, command: `mkdir -p ${dir} && npm install --prefix ${dir} --no-save --no-audit --no-fund --loglevel=error ${pkg.npm}@${pkg.version} && ${link}` });
  }
  return out;
}

export async function buildTemplate(req: BuildRequest, deps: BuildDeps): Promise<Template> {
  const started = Date.now();
  const { spec } = req;
  // Before any step runs: a file that cannot work here says so, at the step, with what to do.
  if (deps.provider.name === "local") {
    const issues = composeIssues(spec, req.fileName);
    if (issues.length > 0) {
      throw new PaddockError("invalid_argument", `${req.fileName} cannot be built on the local provider:\n${issues.map(formatIssue).join("\n")}`, { issues });
    }
  }
  const withServices = servicesOf(spec).length > 0;
  const agents = agentSteps(spec, deps.agentPackages);
  const steps = [
    ...agents.map((a) => ({ keyText: a.key, command: a.command, title: a.title, mount: a.mount })),
    ...spec.install.map((s) => ({ keyText: s.run, command: s.run, title: s.run, mount: null })),
  ];
  const total = steps.length + (withServices ? 1 : 0);
  const layers: string[] = [];
  let parent: string | null = null;
  for (const [index, step] of steps.entries()) {
    const key = layerKey(spec.base, parent, step.keyText);
    const cached = !req.noCache && (await deps.store.getLayer(key)) !== null && (await deps.layers.has(key));
    req.onEvent({ type: "step", index, total, command: step.title, status: cached ? "cached" : "running" });
    if (!cached) {
      if (req.noCache) await deps.layers.remove(key);
      const run = () => runStep(req, deps, { index, command: step.command, key, parent, below: [...layers], ...(step.mount ? { mount: step.mount } : {}) });
      await (deps.steps ? deps.steps.run(key, run) : run());
    }
    layers.push(key);
    parent = key;
  }
  if (withServices) {
    const index = steps.length;
    const command = servicesStepTitle(spec);
    const key = layerKey(spec.base, parent, servicesStepCommand(spec));
    const cached = !req.noCache && (await deps.store.getLayer(key)) !== null && (await deps.layers.has(key));
    req.onEvent({ type: "step", index, total, command, status: cached ? "cached" : "running" });
    if (!cached) {
      if (req.noCache) await deps.layers.remove(key);
      const run = () => runServicesStep(req, deps, { index, command, key, parent, below: [...layers] });
      await (deps.steps ? deps.steps.run(key, run) : run());
    }
    layers.push(key);
    parent = key;
  }
  const id = createHash("sha256").update(JSON.stringify([req.name, req.version, spec.base, layers])).digest("hex").slice(0, 24);
  const template: Template = { id, environment: req.name, version: req.version, base: spec.base, layers, createdAt: new Date().toISOString() };
  await deps.store.putTemplate(template);
  req.onEvent({ type: "done", templateId: id, durationMs: Date.now() - started });
  return template;
}

async function runStep(
  req: BuildRequest,
  deps: BuildDeps,
  step: { index: number; command: string; key: string; parent: string | null; below: string[]; mount?: { source: string; target: string } },
): Promise<void> {
  const sandboxId = `b-${randomBytes(6).toString("hex")}`;
  const started = Date.now();
  const tail = new TailBuffer(TAIL_LINES);
  const spec = {
    id: sandboxId,
    mode: "build" as const,
    base: req.spec.base,
    layers: step.below,
    compute: req.spec.compute,
    hostname: req.spec.name,
    env: {},
    ...(step.mount ? { mounts: [step.mount] } : {}),
    ...(deps.egress ? { egress: deps.egress.forBuild(sandboxId, req.name, req.spec, req.fileName) } : {}),
  };
  await deps.provider.create(spec).catch(async (err: unknown) => {
    await deps.egress?.detach(sandboxId).catch(() => undefined);
    throw err;
  });
  let exitCode: number;
  try {
    const result = await deps.provider.exec(sandboxId, {
      argv: ["/bin/sh", "-c", step.command],
      cwd: "/workspace",
      timeoutMs: req.spec.compute.timeoutMs,
      onStdout: (b) => emitOutput(req, tail, step.index, "stdout", b),
      onStderr: (b) => emitOutput(req, tail, step.index, "stderr", b),
      ...(req.signal ? { signal: req.signal } : {}),
    });
    exitCode = result.exitCode;
  } catch (err) {
    await deps.provider.stop(sandboxId);
    await deps.egress?.detach(sandboxId);
    throw err;
  }
  await deps.egress?.detach(sandboxId);
  const durationMs = Date.now() - started;
  if (exitCode !== 0) {
    await deps.provider.stop(sandboxId);
    req.onEvent({ type: "step-done", index: step.index, exitCode, durationMs, layerId: null });
    const lastLines = tail.lines();
    const hint = lastLines.some((l) => NETWORK_ERROR.test(l)) ? NETWORK_ERROR_HINT : "";
    throw new PaddockError("invalid_argument", `install step ${step.index + 1} (${JSON.stringify(step.command)}) failed with exit code ${exitCode}${hint}`, {
      step: step.index,
      exitCode,
      lastLines,
    });
  }
  await commitStep(req, deps, sandboxId, step, durationMs);
}

/**
 * Stop a build sandbox whose step succeeded, keeping its writable layer as the step's layer (for
 * a services step the provider first stops the services cleanly, in reverse order), and record it.
 */
async function commitStep(
  req: BuildRequest,
  deps: BuildDeps,
  sandboxId: string,
  step: { index: number; command: string; key: string; parent: string | null },
  durationMs: number,
): Promise<void> {
  await deps.provider.stop(sandboxId, { commitAs: step.key });
  const sizeBytes = await deps.layers.usage(step.key);
  await deps.store.putLayer({
    id: step.key,
    parentId: step.parent,
    command: step.command,
    contentDigest: await contentDigest(deps.layers.layerPath(step.key)),
    sizeBytes,
    createdAt: new Date().toISOString(),
  });
  req.onEvent({ type: "step-done", index: step.index, exitCode: 0, durationMs, layerId: step.key, sizeBytes });
}

/**
 * The services step: a build sandbox on top of the install layers with the services started; once
 * every one is ready the seed steps run in it (as root, like install steps, each its own command),
 * then the services are stopped cleanly (the provider does that before it commits) and the
 * sandbox's writable layer becomes the step's layer.
 */
async function runServicesStep(
  req: BuildRequest,
  deps: BuildDeps,
  step: { index: number; command: string; key: string; parent: string | null; below: string[]; mount?: { source: string; target: string } },
): Promise<void> {
  const sandboxId = `b-${randomBytes(6).toString("hex")}`;
  const started = Date.now();
  const tail = new TailBuffer(TAIL_LINES);
  const say = (line: string) => emitOutput(req, tail, step.index, "stdout", Buffer.from(`${line}\n`));
  await deps.provider
    .create({
      id: sandboxId,
      mode: "build",
      base: req.spec.base,
      layers: step.below,
      compute: req.spec.compute,
      hostname: req.spec.name,
      env: {},
      services: servicesOf(req.spec),
      ...(deps.egress ? { egress: deps.egress.forBuild(sandboxId, req.name, req.spec, req.fileName) } : {}),
    })
    .catch(async (err: unknown) => {
      await deps.egress?.detach(sandboxId).catch(() => undefined);
      throw err;
    });
  const fail = async (err: PaddockError | unknown, exitCode: number | null): Promise<never> => {
    await deps.provider.stop(sandboxId).catch(() => undefined);
    await deps.egress?.detach(sandboxId).catch(() => undefined);
    if (exitCode !== null) req.onEvent({ type: "step-done", index: step.index, exitCode, durationMs: Date.now() - started, layerId: null });
    throw err;
  };
  try {
    const ready = await deps.provider.waitForServices(sandboxId, req.spec.compute.timeoutMs);
    say(`services ready: ${ready.map((s) => s.name).join(", ")}`);
  } catch (err) {
    const lastLines = err instanceof PaddockError && Array.isArray(err.details?.lastLines) ? (err.details.lastLines as string[]) : [];
    const message = err instanceof Error ? err.message.split("\n")[0] : String(err);
    return fail(new PaddockError("invalid_argument", `services did not start at build time: ${message}`, { step: step.index, exitCode: null, lastLines }, { cause: err }), null);
  }
  for (const [i, seed] of seedOf(req.spec).entries()) {
    say(`seed step ${i + 1}: ${seed.run}`);
    let exitCode: number;
    try {
      exitCode = (
        await deps.provider.exec(sandboxId, {
          argv: ["/bin/sh", "-c", seed.run],
          cwd: "/workspace",
          timeoutMs: req.spec.compute.timeoutMs,
          onStdout: (b) => emitOutput(req, tail, step.index, "stdout", b),
          onStderr: (b) => emitOutput(req, tail, step.index, "stderr", b),
          ...(req.signal ? { signal: req.signal } : {}),
        })
      ).exitCode;
    } catch (err) {
      return fail(err, null);
    }
    if (exitCode !== 0) {
      const lastLines = tail.lines();
      const hint = lastLines.some((l) => NETWORK_ERROR.test(l)) ? NETWORK_ERROR_HINT : "";
      return fail(
        new PaddockError("invalid_argument", `seed step ${i + 1} (${JSON.stringify(seed.run)}) failed with exit code ${exitCode}${hint}`, { step: step.index, exitCode, lastLines }),
        exitCode,
      );
    }
  }
  await deps.egress?.detach(sandboxId);
  await commitStep(req, deps, sandboxId, step, Date.now() - started);
}

function emitOutput(req: BuildRequest, tail: TailBuffer, index: number, stream: "stdout" | "stderr", chunk: Buffer): void {
  const data = chunk.toString("utf8");
  tail.push(data);
  req.onEvent({ type: "output", index, stream, data });
}

/** Keeps the last N lines of a stream for the failure message. */
class TailBuffer {
  private text = "";
  constructor(private readonly max: number) {}
  push(s: string): void {
    this.text = (this.text + s).split("\n").slice(-(this.max + 1)).join("\n");
  }
  lines(): string[] {
    return this.text.replace(/\n$/, "").split("\n").slice(-this.max).filter((l, i, a) => l !== "" || i < a.length - 1);
  }
}
