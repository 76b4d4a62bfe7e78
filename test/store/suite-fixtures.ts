/** Builders and assertions shared by the store conformance suite. */
import assert from "node:assert/strict";
import type { ErrorCode } from "../../src/core/errors.ts";
import { PaddockError } from "../../src/core/errors.ts";
import type { EnvironmentVersion, Layer, Session, Template } from "../../src/core/domain.ts";

export type VersionInput = Omit<EnvironmentVersion, "version" | "createdAt" | "buildStatus" | "templateId" | "buildError">;

/** ISO-8601 UTC with or without fractional seconds. */
export const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

export function versionInput(name: string, n = 1): VersionInput {
  return {
    name,
    fileName: `${name}.yml`,
    // Non-ASCII and CRLF: the source must come back byte for byte.
    source: `name: ${name}\r\n# édition ${n} ✓\n`,
    spec: { name, steps: [{ run: `echo ${n}` }], limits: { cpu: 2, memoryMb: 4096 }, tags: [] },
    sourceDigest: `sha256:${name}-${n}`,
    createdBy: "local-admin",
  };
}

export function session(id: string, over: Partial<Session> = {}): Session {
  return {
    id,
    environment: "runtime",
    version: 1,
    templateId: "tpl-1",
    provider: "local",
    state: "running",
    createdAt: "2026-11-02T10:00:00.000Z",
    expiresAt: null,
    endedAt: null,
    endReason: null,
    providerState: { pid: 4242, netns: "pd-1", mounts: ["/a", "/b"], nested: { ok: true } },
    startedBy: "alice",
    agent: null,
    snapshot: null,
    ...over,
  };
}

export function layer(id: string, over: Partial<Layer> = {}): Layer {
  return {
    id,
    parentId: null,
    command: "base:debian-12",
    contentDigest: `sha256:content-${id}`,
    sizeBytes: 123_456_789,
    createdAt: "2026-11-02T10:00:00.000Z",
    ...over,
  };
}

export function template(id: string, over: Partial<Template> = {}): Template {
  return {
    id,
    environment: "runtime",
    version: 1,
    base: "debian-12",
    layers: ["l-base", "l-apt", "l-npm"],
    createdAt: "2026-11-02T10:00:00.000Z",
    ...over,
  };
}

/** Assert `p` rejects a PaddockError with `code` whose message matches `message` when given. */
export async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof PaddockError, `expected a PaddockError, got ${String(err)}`);
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}
