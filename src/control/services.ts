/**
 * Services of an environment (`services:`, `seed:`) as the control plane uses them: the
 * `ServiceSpec`s a sandbox is created with, the build cache key of the services step, and the
 * local provider's refusal of `docker-compose up` in install steps. See docs/config.md, "Services".
 */
import { createHash } from "node:crypto";
import type { ServiceSpec } from "../core/index.ts";
import type { ConfigIssue, EnvironmentSpec } from "../config/index.ts";

/**
 * The services every sandbox of this environment starts, in start order: pass them as
 * `SandboxSpec.services` when creating a session (and pool members and forks) from its template.
 * A spec stored before services existed has none.
 *
 * @example await provider.create({ ...sandbox, services: servicesOf(spec) });
 */
export function servicesOf(spec: Pick<EnvironmentSpec, "services">): ServiceSpec[] {
  return (spec.services ?? []).map((s) => ({
    name: s.name,
    command: s.command,
    user: s.user,
    ...(s.cwd !== null ? { cwd: s.cwd } : {}),
    env: { ...s.env },
    ready: "port" in s.ready ? { port: s.ready.port } : { command: s.ready.command },
    readyTimeoutMs: s.readyTimeoutMs,
    dataDirs: [...s.dataDirs],
    restartLimit: s.restartLimit,
    dependsOn: [...s.dependsOn],
  }));
}

/** The seed steps (none for a spec stored before they existed). */
export function seedOf(spec: Pick<EnvironmentSpec, "seed">): { run: string }[] {
  return spec.seed ?? [];
}

/** The command line the build shows and records for the services step. */
export function servicesStepTitle(spec: Pick<EnvironmentSpec, "services" | "seed">): string {
  const names = servicesOf(spec).map((s) => s.name).join(", ");
  const seed = seedOf(spec).length;
  return `services: start ${names}${seed ? `, run ${seed} seed step${seed === 1 ? "" : "s"}` : ""}, stop`;
}

/**
 * What the services step's layer id covers besides its parent: every service setting and every
 * seed command, so changing any of them rebuilds the step (and only it and what follows).
 */
export function servicesStepCommand(spec: Pick<EnvironmentSpec, "services" | "seed">): string {
  const canonical = JSON.stringify({ services: servicesOf(spec), seed: seedOf(spec).map((s) => s.run) });
  return `paddock-services-v1 ${createHash("sha256").update(canonical).digest("hex")}`;
}

/**
 * `docker-compose up` / `docker compose up` (also `start`, `run`, `create`) as a command of a
 * command line: at its start or after `;`, `&`, `|`, `(`, a backquote or a newline, optionally
 * behind `sudo` or variable assignments. (`echo docker-compose up` starts nothing.)
 */
const COMPOSE_UP = /(?:^|[;&|(`\n])\s*(?:sudo\s+|[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:docker-compose|docker\s+compose)\b[^;&|\n]*?\s(?:up|start|run|create)\b/;

/**
 * Install and seed steps that start containers with Docker Compose. A sandbox on the local provider
 * has no container runtime, and a container started at build time would not be running in the
 * sessions anyway: each is refused, located, saying to declare the containers as `services:`.
 */
export function composeIssues(spec: Pick<EnvironmentSpec, "install" | "seed" | "locations">, fileName: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const check = (key: "install" | "seed", steps: { run: string }[]) =>
    steps.forEach((step, i) => {
      if (!COMPOSE_UP.test(step.run)) return;
      const path = `${key}[${i}]`;
      const at = spec.locations[path] ?? { line: 0, column: 0 };
      const shown = step.run.length > 60 ? `${step.run.slice(0, 59)}…` : step.run;
      issues.push({
        file: fileName,
        line: at.line,
        column: at.column,
        path,
        message:
          `${JSON.stringify(shown)} starts containers, which a sandbox on the local provider cannot run (there is no container runtime inside it): ` +
          'declare each container as a service under "services:" (command, ready, dataDirs), install its program in an install step ' +
          '(e.g. "apt-get install -y postgresql" with base: debian-12), and remove this step',
      });
    });
  check("install", spec.install);
  check("seed", seedOf(spec));
  return issues;
}
