/**
 * The fake EC2's reading of Query API parameters (`Name.N.Sub`, 1-based lists), rejecting what
 * EC2 rejects for the parameters Paddock sends. References as in index.ts.
 */

export class Ec2Error extends Error {
  constructor(readonly code: string, message: string, readonly status = 400) {
    super(message);
  }
}

/** `Prefix.1`, `Prefix.2`, … in order (EC2's flattened lists). */
export function listParam(p: URLSearchParams, prefix: string): string[] {
  const out: string[] = [];
  for (let n = 1; p.has(`${prefix}.${n}`); n++) out.push(p.get(`${prefix}.${n}`) ?? "");
  return out;
}

const KNOWN_FILTERS = /^(instance-state-name|instance-id|tag-key|tag:.+)$/;
const STATES = ["pending", "running", "shutting-down", "terminated", "stopping", "stopped"];

export function parseTags(p: URLSearchParams, prefix: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (let n = 1; p.has(`${prefix}.${n}.Key`); n++) {
    const key = p.get(`${prefix}.${n}.Key`) ?? "";
    const value = p.get(`${prefix}.${n}.Value`) ?? "";
    if (key.length === 0 || key.length > 128) throw new Ec2Error("InvalidParameterValue", `Tag key must be 1 to 128 characters: '${key}'`);
    if (value.length > 256) throw new Ec2Error("InvalidParameterValue", `Tag value exceeds the maximum length of 256 characters`);
    if (key.toLowerCase().startsWith("aws:")) throw new Ec2Error("InvalidParameterValue", `Tag keys starting with 'aws:' are reserved for internal use`);
    tags.set(key, value);
  }
  if (tags.size > 50) throw new Ec2Error("TagLimitExceeded", "The maximum number of tags per resource is 50");
  return tags;
}

export function parseRunInstances(p: URLSearchParams): { minCount: number; launchTemplate: { id?: string; name?: string }; userData: string; tags: Map<string, string> } {
  const min = p.get("MinCount");
  const max = p.get("MaxCount");
  if (min === null) throw new Ec2Error("MissingParameter", "The request must contain the parameter MinCount");
  if (max === null) throw new Ec2Error("MissingParameter", "The request must contain the parameter MaxCount");
  const minCount = Number(min);
  const maxCount = Number(max);
  if (!Number.isInteger(minCount) || minCount < 1) throw new Ec2Error("InvalidParameterValue", `Value (${min}) for parameter minCount is invalid. Expected a positive integer.`);
  if (!Number.isInteger(maxCount) || maxCount < minCount) throw new Ec2Error("InvalidParameterValue", `Value (${max}) for parameter maxCount is invalid. Must be at least minCount.`);
  const id = p.get("LaunchTemplate.LaunchTemplateId") ?? undefined;
  const name = p.get("LaunchTemplate.LaunchTemplateName") ?? undefined;
  // Paddock always launches from a template: the fake has no AMI/ImageId path.
  if ((id === undefined) === (name === undefined))
    throw new Ec2Error("InvalidParameterValue", "Specify exactly one of LaunchTemplate.LaunchTemplateId and LaunchTemplate.LaunchTemplateName (this fake supports launches from launch templates only)");
  if (id !== undefined && !/^lt-[0-9a-f]{8,17}$/.test(id)) throw new Ec2Error("InvalidLaunchTemplateId.Malformed", `The specified ID for the launch template (${id}) is not valid.`);
  const version = p.get("LaunchTemplate.Version");
  if (version !== null && !/^(\$Latest|\$Default|[1-9]\d*)$/.test(version)) throw new Ec2Error("InvalidLaunchTemplateId.VersionNotFound", `Launch template version ${version} does not exist`);
  const encoded = p.get("UserData") ?? "";
  if (encoded !== "" && !/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) throw new Ec2Error("InvalidParameterValue", "Invalid BASE64 encoding of user data.");
  const userData = Buffer.from(encoded, "base64").toString();
  if (Buffer.byteLength(userData) > 16_384) throw new Ec2Error("InvalidParameterValue", "User data is limited to 16384 bytes");
  const tags = new Map<string, string>();
  for (let n = 1; p.has(`TagSpecification.${n}.ResourceType`); n++) {
    const type = p.get(`TagSpecification.${n}.ResourceType`) ?? "";
    if (!["instance", "volume", "network-interface", "spot-instances-request"].includes(type)) throw new Ec2Error("InvalidParameterValue", `'${type}' is not a valid taggable resource type for this operation.`);
    if (type === "instance") for (const [k, v] of parseTags(p, `TagSpecification.${n}.Tag`)) tags.set(k, v);
  }
  return { minCount, launchTemplate: { ...(id !== undefined ? { id } : {}), ...(name !== undefined ? { name } : {}) }, userData, tags };
}

export function parseDescribeInstances(p: URLSearchParams): { instanceIds: string[]; filters: { name: string; values: string[] }[] } {
  const instanceIds = listParam(p, "InstanceId");
  for (const id of instanceIds) if (!/^i-[0-9a-f]{8,17}$/.test(id)) throw new Ec2Error("InvalidInstanceID.Malformed", `Invalid id: "${id}"`);
  const filters: { name: string; values: string[] }[] = [];
  for (let n = 1; p.has(`Filter.${n}.Name`); n++) {
    const name = p.get(`Filter.${n}.Name`) ?? "";
    if (!KNOWN_FILTERS.test(name)) throw new Ec2Error("InvalidParameterValue", `The filter '${name}' is invalid`);
    const values = listParam(p, `Filter.${n}.Value`);
    if (name === "instance-state-name") for (const v of values) if (!STATES.includes(v)) throw new Ec2Error("InvalidParameterValue", `The filter value '${v}' is invalid for instance-state-name`);
    filters.push({ name, values });
  }
  return { instanceIds, filters };
}

export function parseDescribeLaunchTemplates(p: URLSearchParams): { ids: string[]; names: string[] } {
  const ids = listParam(p, "LaunchTemplateId");
  const names = listParam(p, "LaunchTemplateName");
  if (ids.length && names.length) throw new Ec2Error("InvalidParameterCombination", "You cannot specify both launch template IDs and launch template names");
  for (const id of ids) if (!/^lt-[0-9a-f]{8,17}$/.test(id)) throw new Ec2Error("InvalidLaunchTemplateId.Malformed", `The specified ID for the launch template (${id}) is not valid.`);
  return { ids, names };
}
