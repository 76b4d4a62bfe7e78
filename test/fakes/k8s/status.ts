/**
 * The API server's error answers: a `Status` object with the HTTP code, a machine reason and a
 * message worded as the real apiserver words it (k8s.io/apimachinery/pkg/api/errors), so a
 * client that matches on them behaves as it would against a cluster.
 * https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/
 */
import type { ResourceDef } from "./resources.ts";

/** One field error of an `Invalid` answer (`details.causes[]`). */
export interface Cause {
  /** FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueForbidden, FieldValueDuplicate, FieldValueTypeInvalid … */
  reason: string;
  message: string;
  /** The field path, e.g. `spec.containers[0].name` or `metadata.name`. */
  field: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: Cause[];
  retryAfterSeconds?: number;
}

/** An error the fake answers with (thrown inside a handler, turned into a Status at the edge). */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
  }

  toStatus(): Record<string, unknown> {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    };
  }
}

/** `pods` or `deployments.apps`: how the apiserver names a resource in messages. */
export function qualifiedResource(def: ResourceDef): string {
  return def.group ? `${def.resource}.${def.group}` : def.resource;
}

function details(def: ResourceDef, name: string): StatusDetails {
  return { name, ...(def.group ? { group: def.group } : {}), kind: def.resource };
}

export function notFound(def: ResourceDef, name: string): ApiError {
  return new ApiError(404, "NotFound", `${qualifiedResource(def)} "${name}" not found`, details(def, name));
}

export function alreadyExists(def: ResourceDef, name: string): ApiError {
  return new ApiError(409, "AlreadyExists", `${qualifiedResource(def)} "${name}" already exists`, details(def, name));
}

export function conflict(def: ResourceDef, name: string): ApiError {
  return new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualifiedResource(def)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    details(def, name),
  );
}

/** 422: `Pod "x" is invalid: [a: Required value, b: Invalid value: …]` with one cause per field. */
export function invalid(def: ResourceDef, name: string, causes: Cause[]): ApiError {
  const parts = causes.map((c) => `${c.field}: ${c.message}`);
  const text = parts.length === 1 ? parts[0] : `[${parts.join(", ")}]`;
  return new ApiError(422, "Invalid", `${def.kind}${def.group ? `.${def.group}` : ""} "${name}" is invalid: ${text}`, {
    name,
    ...(def.group ? { group: def.group } : {}),
    kind: def.kind,
    causes,
  });
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, "BadRequest", message);
}

export function forbidden(def: ResourceDef, name: string, why: string): ApiError {
  return new ApiError(403, "Forbidden", `${qualifiedResource(def)} "${name}" is forbidden: ${why}`, details(def, name));
}

export function namespaceNotFound(namespace: string): ApiError {
  return new ApiError(404, "NotFound", `namespaces "${namespace}" not found`, { name: namespace, kind: "namespaces" });
}

export function expired(message: string): ApiError {
  return new ApiError(410, "Expired", message);
}

export function methodNotAllowed(): ApiError {
  return new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
}

export function unauthorized(): ApiError {
  return new ApiError(401, "Unauthorized", "Unauthorized");
}

export function notFoundPath(): ApiError {
  return new ApiError(404, "NotFound", "the server could not find the requested resource");
}
