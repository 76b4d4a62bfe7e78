import { createHash } from "node:crypto";
import type { Environment, EnvironmentVersion, Template } from "../core/index.ts";
import { PaddockError, invalid, notFound } from "../core/index.ts";
import type { ConfigIssue, EnvironmentSpec, OffThreadParser } from "../config/index.ts";
import { createOffThreadParser, formatIssue } from "../config/index.ts";
import type { BuildEvent, BuildDeps } from "./builder.ts";
import { isDatabaseUrl, isSecretBound } from "../gateway/index.ts";
import { buildTemplate } from "./builder.ts";
import type { LayerLock } from "./gc.ts";

/**
 * Environments: validate a file, register it as a new version, build its template. A version
 * whose build fails stays in the history with its error and the previous template stays current.
 */
/** The error for a bad file: every located issue in the message and, structured, in details. */
export function invalidFile(fileName: string, issues: ConfigIssue[]): PaddockError {
  return invalid(`${fileName} is not a valid environment file:\n${issues.map(formatIssue).join("\n")}`, { issues });
}

export class Environments {
  /** One build at a time per environment: a second apply waits its turn instead of racing. */
  private readonly building = new Map<string, Promise<unknown>>();

  /**
   * @param parser checks files off the event loop (uploads are untrusted: a slow one must not
   *   hold up other requests); by default a worker thread with a 2 s limit per file.
   */
  constructor(
    private readonly deps: BuildDeps & {
      /** Held shared while a build runs, so garbage collection never removes a layer it reuses. */
      layerLock?: LayerLock;
      /** Called after a build succeeded (a new current version: pools drain, layers may be collectable). */
      onBuilt?: (environment: string) => void;
    },
    private readonly parser: OffThreadParser = createOffThreadParser({ timeoutMs: 2000 }),
  ) {}

  /** The file's own rules, plus what the installation knows: every secret must be bound to hosts. */
  async validate(source: string, fileName: string): Promise<{ spec: EnvironmentSpec | null; issues: ConfigIssue[] }> {
    const parsed = await this.parser.parse(source, fileName);
    if (!parsed.spec) return parsed;
    const issues = unboundSecrets(parsed.spec, fileName);
    return issues.length ? { spec: null, issues } : parsed;
  }

  async apply(
    req: { source: string; fileName: string; createdBy: string; noCache?: boolean; signal?: AbortSignal },
    onEvent: (e: BuildEvent | { type: "version"; name: string; version: number }) => void,
  ): Promise<{ version: EnvironmentVersion; template: Template }> {
    const parsed = await this.validate(req.source, req.fileName);
    if (!parsed.spec) throw invalidFile(req.fileName, parsed.issues);
    const spec = parsed.spec;
    const previous = this.building.get(spec.name) ?? Promise.resolve();
    const log = new BuildLog();
    const userOnEvent = onEvent;
    onEvent = (e) => {
      log.add(e);
      userOnEvent(e);
    };
    const run = previous.catch(() => undefined).then(async () => {
      const version = await this.deps.store.addEnvironmentVersion({
        name: spec.name,
        fileName: req.fileName,
        source: req.source,
        spec,
        sourceDigest: createHash("sha256").update(req.source).digest("hex"),
        createdBy: req.createdBy,
      });
      onEvent({ type: "version", name: spec.name, version: version.version });
      try {
        const build = () =>
          buildTemplate(
            { name: spec.name, version: version.version, fileName: req.fileName, spec, onEvent, ...(req.noCache ? { noCache: true } : {}), ...(req.signal ? { signal: req.signal } : {}) },
            this.deps,
          );
        const template = await (this.deps.layerLock ? this.deps.layerLock.withShared(build) : build());
        await this.deps.store.putBuildLog(spec.name, version.version, log.text());
        await this.deps.store.finishBuild(spec.name, version.version, { templateId: template.id });
        this.deps.onBuilt?.(spec.name);
        const done = await this.deps.store.getEnvironmentVersion(spec.name, version.version);
        return { version: done ?? version, template };
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        await this.deps.store.finishBuild(spec.name, version.version, { error: message });
        const details = err instanceof PaddockError ? err.details : undefined;
        onEvent({
          type: "failed",
          message,
          index: typeof details?.step === "number" ? details.step : null,
          exitCode: typeof details?.exitCode === "number" ? details.exitCode : null,
          lastLines: Array.isArray(details?.lastLines) ? (details.lastLines as string[]) : [],
        });
        await this.deps.store.putBuildLog(spec.name, version.version, log.text()).catch(() => undefined);
        throw err;
      }
    });
    this.building.set(spec.name, run);
    try {
      return await run;
    } finally {
      if (this.building.get(spec.name) === run) this.building.delete(spec.name);
    }
  }

  /** A version's build log (steps, output, exit codes), or not_found. */
  async buildLog(name: string, version: number): Promise<string> {
    const log = await this.deps.store.getBuildLog(name, version);
    if (log === null) throw new PaddockError("not_found", `no build log for ${name} version ${version}`);
    return log;
  }

  /** Ends the parser's worker thread. */
  async close(): Promise<void> {
    await this.parser.close();
  }

  /** After a restart: a build that was running when the control plane died will never finish. */
  async reconcile(): Promise<number> {
    let interrupted = 0;
    for (const env of await this.deps.store.listEnvironments()) {
      for (const v of await this.deps.store.listEnvironmentVersions(env.name)) {
        if (v.buildStatus !== "building") continue;
        await this.deps.store.finishBuild(env.name, v.version, { error: "interrupted: the control plane stopped during the build; apply the file again" });
        interrupted++;
      }
    }
    return interrupted;
  }

  async list(): Promise<Environment[]> {
    return this.deps.store.listEnvironments();
  }

  async get(name: string): Promise<{ environment: Environment; current: EnvironmentVersion | null; template: Template | null }> {
    const environment = await this.deps.store.getEnvironment(name);
    if (!environment) throw notFound("environment", name);
    const current = environment.currentVersion === null ? null : await this.deps.store.getEnvironmentVersion(name, environment.currentVersion);
    const template = current?.templateId ? await this.deps.store.getTemplate(current.templateId) : null;
    return { environment, current, template };
  }

  async history(name: string): Promise<EnvironmentVersion[]> {
    if (!(await this.deps.store.getEnvironment(name))) throw notFound("environment", name);
    return this.deps.store.listEnvironmentVersions(name);
  }

  /** The current version of each environment, parsed (a built version never changes), with the environment row it was read under. */
  private readonly currentCache = new Map<string, { stamp: string; value: { version: EnvironmentVersion; spec: EnvironmentSpec; template: Template } }>();

  /** The version and template a new session of `name` starts from. */
  async current(name: string): Promise<{ version: EnvironmentVersion; spec: EnvironmentSpec; template: Template }> {
    // On every session start (and pool claim): one lookup, not three and a spec parse. The row's
    // current version and update time say whether what was read before still holds.
    const env = await this.deps.store.getEnvironment(name);
    if (!env) throw notFound("environment", name);
    const stamp = `${env.currentVersion}@${env.updatedAt}`;
    const cached = this.currentCache.get(name);
    if (cached?.stamp === stamp) return cached.value;
    const { environment, current, template } = await this.get(name);
    if (!current || !template) {
      throw new PaddockError(
        "conflict",
        `environment ${JSON.stringify(name)} has no successful build yet (latest version ${environment.latestVersion}): fix the file and run \`paddock env apply\``,
      );
    }
    const value = { version: current, spec: current.spec as EnvironmentSpec, template };
    this.currentCache.set(name, { stamp, value });
    return value;
  }
}

/** A secret with no `hosts:` and no well-known default could never be sent anywhere: say how to bind it. */
function unboundSecrets(spec: EnvironmentSpec, file: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  spec.secrets.forEach((s, i) => {
    // kind: postgres is used by the database gateway, no host needed; kind: http takes a
    // *_DATABASE_URL out of it, and it then needs hosts like any other HTTP secret.
    if (s.hosts || s.kind === "postgres") return;
    if (isSecretBound(s.name) && !(s.kind === "http" && isDatabaseUrl(s.name))) return;
    const at = spec.locations[`secrets[${i}]`] ?? { line: 0, column: 0 };
    issues.push({
      file,
      line: at.line,
      column: at.column,
      path: `secrets[${i}]`,
      message: `${s.name} is not bound to any host, so it could never be used: write it as "- name: ${s.name}" with "hosts: [api.example.com]" naming where it may be sent`,
    });
  });
  return issues;
}

/** Most of a build log kept: its start and its end (where a failure is). */
export const BUILD_LOG_HEAD = 32 * 1024;
export const BUILD_LOG_TAIL = 224 * 1024;

/** A build's events as text, bounded: the head and the tail are kept, the middle counted. */
export class BuildLog {
  #head = "";
  #tail = "";
  #dropped = 0;

  add(e: BuildEvent | { type: "version"; name: string; version: number }): void {
    let line = describeBuildEvent(e);
    if (line === null) return;
    if (this.#head.length < BUILD_LOG_HEAD) {
      // One chunk of output can be large: the head takes only what it has room for.
      const room = BUILD_LOG_HEAD - this.#head.length;
      this.#head += line.slice(0, room);
      line = line.slice(room);
      if (line === "") return;
    }
    this.#tail += line;
    if (this.#tail.length > BUILD_LOG_TAIL * 2) {
      const cut = this.#tail.length - BUILD_LOG_TAIL;
      this.#dropped += cut;
      this.#tail = this.#tail.slice(cut);
    }
  }

  text(): string {
    let tail = this.#tail;
    let dropped = this.#dropped;
    if (tail.length > BUILD_LOG_TAIL) {
      dropped += tail.length - BUILD_LOG_TAIL;
      tail = tail.slice(tail.length - BUILD_LOG_TAIL);
    }
    return this.#head + (dropped ? `\n… ${dropped} characters of output left out …\n` : "") + tail;
  }
}

function describeBuildEvent(e: BuildEvent | { type: "version"; name: string; version: number }): string | null {
  const ev = e as { type: string } & Record<string, unknown>;
  switch (ev.type) {
    case "version":
      return `== ${String(ev.name)} version ${String(ev.version)}, ${new Date().toISOString()}\n`;
    case "step":
      return `== step ${Number(ev.index) + 1}/${String(ev.total)}: ${String(ev.command)}${ev.status === "cached" ? " (cached)" : ""}\n`;
    case "output":
      return String(ev.data);
    case "step-done":
      return `-- exit ${String(ev.exitCode)} in ${String(ev.durationMs)} ms\n`;
    case "done":
      return `== done: template ${String(ev.templateId)} in ${String(ev.durationMs)} ms\n`;
    case "failed":
      return `== failed: ${String(ev.message)}\n`;
    default:
      return null;
  }
}
