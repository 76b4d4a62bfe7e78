import type { Environment, EnvironmentVersion, Layer, Session, SessionState, Template } from "./domain.ts";

/**
 * Persistence for the control plane. One interface, two implementations over time (SQLite embedded
 * by default; PostgreSQL for many nodes). Every method is atomic on its own; `transaction` groups
 * several. Rules every implementation follows (the conformance suite in test/store checks them):
 * - A getter for an unknown key resolves `null`; list methods resolve `[]` when there is nothing.
 * - Writes that would break a uniqueness rule reject with a PaddockError of code `conflict`.
 * - Returned objects are copies: mutating them changes nothing stored.
 * - Timestamps are ISO-8601 strings in UTC.
 */
export interface Store {
  /** Register the next version of an environment (version = latest + 1, starting at 1). */
  addEnvironmentVersion(v: Omit<EnvironmentVersion, "version" | "createdAt" | "buildStatus" | "templateId" | "buildError">): Promise<EnvironmentVersion>;
  /** Record the end of a build; on success the environment's current version moves to it. */
  finishBuild(name: string, version: number, result: { templateId: string } | { error: string }): Promise<void>;
  getEnvironment(name: string): Promise<Environment | null>;
  listEnvironments(): Promise<Environment[]>;
  getEnvironmentVersion(name: string, version: number): Promise<EnvironmentVersion | null>;
  /** Versions of one environment, newest first. */
  listEnvironmentVersions(name: string): Promise<EnvironmentVersion[]>;
  /** Delete an environment and all its versions; resolves false when unknown. */
  deleteEnvironment(name: string): Promise<boolean>;

  /** Insert a layer; inserting an id that exists is a no-op (layers are content-keyed). */
  putLayer(layer: Layer): Promise<void>;
  getLayer(id: string): Promise<Layer | null>;
  listLayers(): Promise<Layer[]>;
  deleteLayer(id: string): Promise<boolean>;

  putTemplate(t: Template): Promise<void>;
  getTemplate(id: string): Promise<Template | null>;
  listTemplates(): Promise<Template[]>;

  /** Insert a new session; its id must be new (`conflict` otherwise). */
  createSession(s: Session): Promise<void>;
  /** Change fields of a session; rejects `not_found` for an unknown id. Returns the updated session. */
  updateSession(id: string, patch: Partial<Omit<Session, "id">>): Promise<Session>;
  getSession(id: string): Promise<Session | null>;
  /** Sessions newest first, optionally only those in the given states. */
  listSessions(filter?: { states?: SessionState[]; environment?: string }): Promise<Session[]>;
  deleteSession(id: string): Promise<boolean>;

  close(): Promise<void>;
}
