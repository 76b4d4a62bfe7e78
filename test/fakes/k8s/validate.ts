/**
 * Schema validation the way the apiserver does it: built-in kinds against the Kubernetes OpenAPI
 * schemas (the `kubernetes-models` package's generated validators), custom resources against
 * their CRD's `openAPIV3Schema` (ajv), with CRD structural defaulting and pruning of unknown
 * fields (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning).
 * CEL rules (`x-kubernetes-validations`) are evaluated by the hand translations in cel.ts.
 */
import AjvModule from "ajv";
import addFormatsModule from "ajv-formats";
import type { ErrorObject } from "ajv";
import { ApiError, type Cause } from "./status.ts";
import type { KubeObject } from "./api.ts";
import { checkRules, collectRules } from "./cel.ts";

// ajv and ajv-formats are CommonJS modules whose `default` property is the export.
const Ajv = AjvModule.default;
const addFormats = addFormatsModule.default;

/** ajv's `instancePath` (`/spec/containers/0/name`) as a Kubernetes field path (`spec.containers[0].name`). */
export function fieldPath(instancePath: string, extra?: string): string {
  const parts = instancePath.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (extra !== undefined) parts.push(extra);
  let out = "";
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === "" ? p : `.${p}`;
  return out;
}

function valueAt(obj: unknown, instancePath: string): unknown {
  let v: unknown = obj;
  for (const p of instancePath.split("/").slice(1)) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string, unknown>)[p.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return v;
}

/** One cause per field (the first error at each path), worded as the apiserver words them. */
export function causesFromErrors(errors: ErrorObject[], obj: unknown): Cause[] {
  const byField = new Map<string, Cause>();
  for (const e of errors) {
    if (e.keyword === "if" || e.keyword === "anyOf" || e.keyword === "oneOf") continue;
    const cause = causeOf(e, obj);
    if (!byField.has(cause.field)) byField.set(cause.field, cause);
  }
  if (byField.size === 0 && errors[0]) byField.set("", causeOf(errors[0], obj));
  return [...byField.values()];
}

function causeOf(e: ErrorObject, obj: unknown): Cause {
  const value = JSON.stringify(valueAt(obj, e.instancePath));
  switch (e.keyword) {
    case "required":
      return { reason: "FieldValueRequired", message: "Required value", field: fieldPath(e.instancePath, String(e.params.missingProperty)) };
    case "enum": {
      const allowed = (e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ");
      return { reason: "FieldValueNotSupported", message: `Unsupported value: ${value}: supported values: ${allowed}`, field: fieldPath(e.instancePath) };
    }
    case "type":
      return { reason: "FieldValueTypeInvalid", message: `Invalid value: ${value}: must be of type ${String(e.params.type)}`, field: fieldPath(e.instancePath) };
    default:
      return { reason: "FieldValueInvalid", message: `Invalid value: ${value}: ${e.message ?? e.keyword}`, field: fieldPath(e.instancePath) };
  }
}

/** What a `kubernetes-models` class's `validate()` throws. */
interface ModelValidationError {
  errors?: ErrorObject[];
}

/**
 * Validate a built-in object with its `kubernetes-models` class. A wrong JSON type is what the
 * apiserver cannot even decode: 400 BadRequest, as real; other schema errors are 422 causes.
 */
export function validateBuiltin(ctor: new (data: never) => { validate(): void }, obj: KubeObject): Cause[] {
  try {
    new ctor(obj as never).validate();
    return [];
  } catch (err) {
    const errors = (err as ModelValidationError).errors;
    if (!errors) throw err;
    const causes = causesFromErrors(errors, obj);
    const typeError = causes.find((c) => c.reason === "FieldValueTypeInvalid");
    if (typeError) {
      throw new ApiError(400, "BadRequest", `${obj.kind} in version "${obj.apiVersion.split("/").pop()}" cannot be handled as a ${obj.kind}: ${typeError.field}: ${typeError.message}`);
    }
    return causes;
  }
}

/** A CRD version's schema, compiled; `check` defaults, prunes and validates in place (`old` on update, for CEL transition rules). */
export interface CrdSchema {
  check(obj: KubeObject, old: KubeObject | null): Cause[];
}

type JsonSchema = Record<string, unknown>;

export function compileCrdSchema(openAPIV3Schema: JsonSchema): CrdSchema {
  const ajv = new Ajv({ strict: false, allErrors: true, useDefaults: true, validateFormats: true });
  addFormats(ajv);
  // OpenAPI formats the apiserver accepts without checking their range here.
  for (const f of ["int32", "int64", "float", "double", "byte", "quantity"]) ajv.addFormat(f, true);
  const schema = toAjvSchema(openAPIV3Schema);
  const validate = ajv.compile(schema as Record<string, unknown>);
  const rules = collectRules(openAPIV3Schema);
  return {
    check(obj, old) {
      prune(openAPIV3Schema, obj, true);
      if (!validate(obj)) return causesFromErrors(validate.errors ?? [], obj);
      return checkRules(rules, obj, old);
    },
  };
}

/** OpenAPI v3 → JSON schema: `nullable: true` lets null through; int-or-string keeps both types. */
function toAjvSchema(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(toAjvSchema);
  if (s === null || typeof s !== "object") return s;
  const out: JsonSchema = {};
  for (const [k, v] of Object.entries(s as JsonSchema)) {
    out[k] = k === "properties" || k === "patternProperties" ? Object.fromEntries(Object.entries(v as JsonSchema).map(([p, ps]) => [p, toAjvSchema(ps)])) : toAjvSchema(v);
  }
  if (out.nullable === true && typeof out.type === "string") out.type = [out.type, "null"];
  return out;
}

/**
 * Drop fields the schema does not name (CRD pruning), except under
 * `x-kubernetes-preserve-unknown-fields` and under `metadata` (validated as ObjectMeta instead).
 */
function prune(schema: JsonSchema | undefined, value: unknown, root = false): void {
  if (!schema || value === null || typeof value !== "object") return;
  if (schema["x-kubernetes-preserve-unknown-fields"] === true) return;
  if (Array.isArray(value)) {
    for (const item of value) prune(schema.items as JsonSchema | undefined, item);
    return;
  }
  const obj = value as Record<string, unknown>;
  const props = schema.properties as Record<string, JsonSchema> | undefined;
  const additional = schema.additionalProperties;
  if (props) {
    for (const key of Object.keys(obj)) {
      if (root && (key === "metadata" || key === "apiVersion" || key === "kind")) continue;
      if (props[key]) prune(props[key], obj[key]);
      else if (additional === undefined || additional === false) delete obj[key];
    }
  } else if (additional && typeof additional === "object") {
    for (const key of Object.keys(obj)) prune(additional as JsonSchema, obj[key]);
  }
}

// --- ObjectMeta and names (k8s.io/apimachinery/pkg/api/validation, pkg/util/validation) ---

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

export type NameRule = "subdomain" | "label" | "dns1035";

/** The apiserver's message for a bad name, or null when it is fine. */
export function nameProblem(name: string, rule: NameRule): string | null {
  switch (rule) {
    case "subdomain":
      if (name.length > 253) return "must be no more than 253 characters";
      return DNS1123_SUBDOMAIN.test(name)
        ? null
        : "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    case "label":
      if (name.length > 63) return "must be no more than 63 characters";
      return DNS1123_LABEL.test(name)
        ? null
        : "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    case "dns1035":
      if (name.length > 63) return "must be no more than 63 characters";
      return DNS1035_LABEL.test(name)
        ? null
        : "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
  }
}

export function invalidValue(field: string, value: unknown, why: string): Cause {
  return { reason: "FieldValueInvalid", message: `Invalid value: ${JSON.stringify(value)}: ${why}`, field };
}

export function required(field: string): Cause {
  return { reason: "FieldValueRequired", message: "Required value", field };
}

/** metadata.name, labels and annotations. */
export function validateObjectMeta(obj: KubeObject, rule: NameRule): Cause[] {
  const causes: Cause[] = [];
  const meta = obj.metadata;
  if (!meta.name) causes.push({ reason: "FieldValueRequired", message: "Required value: name or generateName is required", field: "metadata.name" });
  else {
    const problem = nameProblem(meta.name, rule);
    if (problem) causes.push(invalidValue("metadata.name", meta.name, problem));
  }
  for (const [key, value] of Object.entries(meta.labels ?? {})) {
    if (!qualifiedName(key)) causes.push(invalidValue("metadata.labels", key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    if (typeof value !== "string" || value.length > 63 || !LABEL_VALUE.test(value))
      causes.push(invalidValue("metadata.labels", value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
  }
  for (const key of Object.keys(meta.annotations ?? {})) {
    if (!qualifiedName(key)) causes.push(invalidValue("metadata.annotations", key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
  }
  return causes;
}

/** `prefix/name` with a DNS subdomain prefix and a ≤63-character name. */
export function qualifiedName(key: string): boolean {
  const slash = key.lastIndexOf("/");
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const prefix = slash >= 0 ? key.slice(0, slash) : null;
  if (prefix !== null && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) return false;
  return name.length <= 63 && QUALIFIED_NAME.test(name);
}

export { DNS1123_LABEL, DNS1123_SUBDOMAIN };
