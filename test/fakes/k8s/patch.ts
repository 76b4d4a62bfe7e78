/**
 * PATCH bodies: JSON Patch (RFC 6902, `application/json-patch+json`) and JSON Merge Patch
 * (RFC 7386, `application/merge-patch+json`). A strategic merge patch
 * (`application/strategic-merge-patch+json`) is applied as a merge patch: lists are replaced,
 * not merged by their patch keys, which differs from the apiserver for lists such as
 * `spec.containers` (send the whole list). Server-side apply is not served (415).
 */
import { ApiError, badRequest } from "./status.ts";

type Json = unknown;

export function applyPatch(target: Json, contentType: string, body: string): Json {
  let patch: Json;
  try {
    patch = JSON.parse(body);
  } catch (err) {
    throw badRequest(`error decoding patch: ${(err as Error).message}`);
  }
  const type = contentType.split(";")[0]!.trim();
  switch (type) {
    case "application/json-patch+json":
      if (!Array.isArray(patch)) throw badRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
      return jsonPatch(structuredClone(target), patch as Record<string, Json>[]);
    case "application/merge-patch+json":
    case "application/strategic-merge-patch+json":
      return mergePatch(structuredClone(target), patch);
    default:
      throw new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`);
  }
}

export function mergePatch(target: Json, patch: Json): Json {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, Json> = target !== null && typeof target === "object" && !Array.isArray(target) ? (target as Record<string, Json>) : {};
  for (const [k, v] of Object.entries(patch as Record<string, Json>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw badRequest(`the server rejected our request due to an error in our request: invalid JSON pointer "${path}"`);
  return path.slice(1).split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function parentOf(doc: Json, parts: string[], path: string): { parent: Record<string, Json> | Json[]; key: string } {
  let cur = doc;
  for (const p of parts.slice(0, -1)) {
    if (cur === null || typeof cur !== "object") throw unprocessable(`doc is missing path: "${path}"`);
    cur = (cur as Record<string, Json>)[p];
  }
  if (cur === null || typeof cur !== "object") throw unprocessable(`doc is missing path: "${path}"`);
  return { parent: cur as Record<string, Json>, key: parts[parts.length - 1]! };
}

function unprocessable(message: string): ApiError {
  return new ApiError(422, "Invalid", message);
}

function getAt(doc: Json, path: string): Json {
  let cur = doc;
  for (const p of pointer(path)) {
    if (cur === null || typeof cur !== "object") throw unprocessable(`doc is missing path: "${path}"`);
    cur = (cur as Record<string, Json>)[p];
  }
  if (cur === undefined) throw unprocessable(`doc is missing path: "${path}"`);
  return cur;
}

function add(doc: Json, path: string, value: Json): Json {
  const parts = pointer(path);
  if (parts.length === 0) return value;
  const { parent, key } = parentOf(doc, parts, path);
  if (Array.isArray(parent)) {
    const i = key === "-" ? parent.length : Number(key);
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw unprocessable(`add operation does not apply: doc is missing path: "${path}"`);
    parent.splice(i, 0, value);
  } else parent[key] = value;
  return doc;
}

function remove(doc: Json, path: string): Json {
  const parts = pointer(path);
  const { parent, key } = parentOf(doc, parts, path);
  if (Array.isArray(parent)) {
    const i = Number(key);
    if (!Number.isInteger(i) || i < 0 || i >= parent.length) throw unprocessable(`remove operation does not apply: doc is missing path: "${path}"`);
    parent.splice(i, 1);
  } else {
    if (!(key in parent)) throw unprocessable(`remove operation does not apply: doc is missing path: "${path}"`);
    delete parent[key];
  }
  return doc;
}

function jsonPatch(doc: Json, ops: Record<string, Json>[]): Json {
  for (const op of ops) {
    const path = String(op.path ?? "");
    switch (op.op) {
      case "add":
        doc = add(doc, path, structuredClone(op.value));
        break;
      case "remove":
        doc = remove(doc, path);
        break;
      case "replace":
        getAt(doc, path);
        doc = add(remove(doc, path), path, structuredClone(op.value));
        break;
      case "move": {
        const v = getAt(doc, String(op.from));
        doc = add(remove(doc, String(op.from)), path, v);
        break;
      }
      case "copy":
        doc = add(doc, path, structuredClone(getAt(doc, String(op.from))));
        break;
      case "test":
        if (JSON.stringify(getAt(doc, path)) !== JSON.stringify(op.value)) throw unprocessable(`testing value ${path} failed`);
        break;
      default:
        throw badRequest(`Unexpected kind: ${String(op.op)}`);
    }
  }
  return doc;
}
