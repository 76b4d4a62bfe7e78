/**
 * A FAKE of the subset of Amazon EC2's Query API that Paddock's ec2 provider uses, over plain HTTP
 * on a loopback port, driven by the real `@aws-sdk/client-ec2`. Only the API is fake: "launching"
 * an instance runs its user data with `sh` on this machine (the instance's boot), so the node it
 * starts (`paddock node`) is real. Each instance gets its own loopback address (127.201.x.y, as
 * if it were a host of its own) and its own directory standing in for its disk
 * (PADDOCK_NODE_HOME); terminating it kills what it started and frees what its node held, as a
 * terminated VM takes its processes with it.
 *
 * API reference followed (version 2016-11-15):
 * - Query requests: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/Query-Requests.html
 * - RunInstances: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html
 * - DescribeInstances: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html
 * - TerminateInstances: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_TerminateInstances.html
 * - CreateTags: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateTags.html
 * - DescribeLaunchTemplates: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLaunchTemplates.html
 * - Errors: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
 * - Signing: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { mkdir, writeFile, readFile } from "node:fs/promises";
import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import { checkSigV4 } from "./sigv4.ts";
import { errorXml, responseXml, type XmlObject } from "./xml.ts";
import { Ec2Error, parseDescribeInstances, parseDescribeLaunchTemplates, parseRunInstances, parseTags, listParam } from "./params.ts";

export interface FakeLaunchTemplate {
  id: string;
  name: string;
}

export interface FakeEc2Options {
  /** Access key id → secret access key; requests signed with anything else are refused. */
  keys: Record<string, string>;
  launchTemplates: FakeLaunchTemplate[];
  /** Instances (not terminated) the "region" can hold; one more is InsufficientInstanceCapacity. */
  capacity?: number;
  /** Where instances keep their "disk" (one directory each). */
  dir: string;
  /** Environment of an instance's boot (PATH must find `paddock`). */
  bootEnv: NodeJS.ProcessEnv;
  /** Called when an instance is terminated, after its processes are killed: free what its node held (its home). */
  onTerminate: (instance: FakeInstance) => Promise<void>;
}

export type InstanceStateName = "pending" | "running" | "shutting-down" | "terminated";
const STATE_CODES: Record<InstanceStateName, number> = { pending: 0, running: 16, "shutting-down": 32, terminated: 48 };

export interface FakeInstance {
  id: string;
  reservationId: string;
  launchTemplate: FakeLaunchTemplate;
  state: InstanceStateName;
  privateIp: string;
  tags: Map<string, string>;
  userData: string;
  /** The instance's directory; PADDOCK_NODE_HOME is `${dir}/home`. */
  dir: string;
  launchTime: string;
  boot?: ChildProcess;
}

export interface FakeEc2 {
  url: string;
  instances: Map<string, FakeInstance>;
  /** Every request's action, in order (and whether it was refused). */
  calls: { action: string; error?: string }[];
  /** Refuse these actions with UnauthorizedOperation (an IAM policy without them). */
  deny: Set<string>;
  /** Terminate every instance (killing what they run) and stop serving. */
  close(): Promise<void>;
}

const ACCOUNT = "123456789012";

export async function startFakeEc2(o: FakeEc2Options): Promise<FakeEc2> {
  const instances = new Map<string, FakeInstance>();
  const calls: FakeEc2["calls"] = [];
  const deny = new Set<string>();
  const secrets = new Map(Object.entries(o.keys));
  const netA = 1 + (randomBytes(1)[0]! % 250);
  let host = 1;

  const describe = (i: FakeInstance): XmlObject => ({
    instanceId: i.id,
    imageId: "ami-0fake0000000000001",
    instanceState: { code: STATE_CODES[i.state], name: i.state },
    privateDnsName: `ip-${i.privateIp.replace(/\./g, "-")}.ec2.internal`,
    dnsName: "",
    instanceType: "m7i.large",
    launchTime: i.launchTime,
    placement: { availabilityZone: "us-east-1a", tenancy: "default" },
    privateIpAddress: i.state === "terminated" ? undefined : i.privateIp,
    tagSet: [...i.tags].map(([key, value]) => ({ key, value })),
  });

  const findTemplate = (ref: { id?: string; name?: string }): FakeLaunchTemplate => {
    const t = o.launchTemplates.find((x) => (ref.id !== undefined ? x.id === ref.id : x.name === ref.name));
    if (t) return t;
    if (ref.id !== undefined) throw new Ec2Error("InvalidLaunchTemplateId.NotFound", `The specified launch template, with template ID ${ref.id}, does not exist.`);
    throw new Ec2Error("InvalidLaunchTemplateName.NotFoundException", `The specified launch template, with template name ${ref.name ?? ""}, does not exist.`);
  };

  const boot = async (i: FakeInstance): Promise<void> => {
    const home = join(i.dir, "home");
    await mkdir(home, { recursive: true, mode: 0o700 });
    const script = join(i.dir, "user-data");
    await writeFile(script, i.userData, { mode: 0o700 });
    const log = openSync(join(i.dir, "boot.log"), "a");
    // The instance's own /tmp, as a real one has: terminating kills the whole group, so nothing in it
    // (e.g. the node's command-helper directory, which its helper removes only when it outlives the
    // node) is cleaned by the processes that made it; it goes with the instance's directory instead.
    const tmp = join(i.dir, "tmp");
    await mkdir(tmp, { recursive: true, mode: 0o700 });
    // cloud-init would run it as root at first boot; here it is a process group of its own, so terminating kills all of it.
    i.boot = spawn("sh", [script], { env: { ...o.bootEnv, TMPDIR: tmp, PADDOCK_NODE_HOME: home, PADDOCK_NODE_ADDRESS: i.privateIp }, stdio: ["ignore", log, log], detached: true });
    closeSync(log);
    i.boot.on("error", () => undefined);
    i.state = "running";
  };

  const terminate = async (i: FakeInstance): Promise<void> => {
    if (i.state === "terminated") return;
    i.state = "shutting-down";
    const p = i.boot;
    if (p?.pid !== undefined && p.exitCode === null && p.signalCode === null) {
      const gone = new Promise<void>((r) => p.once("exit", () => r()));
      try {
        process.kill(-p.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
      await gone;
    }
    await o.onTerminate(i);
    i.state = "terminated";
  };

  const actions: Record<string, (p: URLSearchParams) => Promise<XmlObject>> = {
    async RunInstances(p) {
      const req = parseRunInstances(p);
      const template = findTemplate(req.launchTemplate);
      const live = [...instances.values()].filter((i) => i.state !== "terminated").length;
      if (live + req.minCount > (o.capacity ?? 8))
        throw new Ec2Error("InsufficientInstanceCapacity", "We currently do not have sufficient m7i.large capacity in the Availability Zone you requested (us-east-1a).", 500);
      const reservationId = `r-${randomBytes(8).toString("hex").slice(0, 17)}`;
      const made: FakeInstance[] = [];
      for (let n = 0; n < req.minCount; n++) {
        const id = `i-${randomBytes(9).toString("hex").slice(0, 17)}`;
        const i: FakeInstance = {
          id, reservationId, launchTemplate: template, state: "pending", privateIp: `127.201.${netA}.${host++}`,
          tags: new Map(req.tags), userData: req.userData, dir: join(o.dir, id), launchTime: new Date().toISOString(),
        };
        instances.set(id, i);
        made.push(i);
      }
      // Answer while pending, as EC2 does; the boot happens after.
      for (const i of made) void boot(i).catch(() => void (i.state = "terminated"));
      return { reservationId, ownerId: ACCOUNT, groupSet: [], instancesSet: made.map(describe) };
    },
    async DescribeInstances(p) {
      const q = parseDescribeInstances(p);
      for (const id of q.instanceIds) if (!instances.has(id)) throw new Ec2Error("InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
      const match = [...instances.values()].filter((i) =>
        (q.instanceIds.length === 0 || q.instanceIds.includes(i.id)) &&
        q.filters.every((f) => {
          if (f.name === "instance-state-name") return f.values.includes(i.state);
          if (f.name === "instance-id") return f.values.includes(i.id);
          if (f.name === "tag-key") return f.values.some((k) => i.tags.has(k));
          const tag = f.name.slice("tag:".length);
          return i.tags.has(tag) && f.values.includes(i.tags.get(tag)!);
        }));
      const byReservation = new Map<string, FakeInstance[]>();
      for (const i of match) byReservation.set(i.reservationId, [...(byReservation.get(i.reservationId) ?? []), i]);
      return { reservationSet: [...byReservation].map(([reservationId, is]) => ({ reservationId, ownerId: ACCOUNT, groupSet: [], instancesSet: is.map(describe) })) };
    },
    async TerminateInstances(p) {
      const ids = listParam(p, "InstanceId");
      if (ids.length === 0) throw new Ec2Error("MissingParameter", "The request must contain the parameter InstanceId");
      for (const id of ids) if (!instances.has(id)) throw new Ec2Error("InvalidInstanceID.NotFound", `The instance ID '${id}' does not exist`);
      const out: XmlObject[] = [];
      for (const id of ids) {
        const i = instances.get(id)!;
        const previous = i.state;
        await terminate(i);
        out.push({ instanceId: id, currentState: { code: STATE_CODES[i.state], name: i.state }, previousState: { code: STATE_CODES[previous], name: previous } });
      }
      return { instancesSet: out };
    },
    async CreateTags(p) {
      const ids = listParam(p, "ResourceId");
      if (ids.length === 0) throw new Ec2Error("MissingParameter", "The request must contain the parameter ResourceId");
      const tags = parseTags(p, "Tag");
      for (const id of ids) if (!instances.has(id)) throw new Ec2Error("InvalidID", `The ID '${id}' is not valid`);
      for (const id of ids) for (const [k, v] of tags) instances.get(id)!.tags.set(k, v);
      return { return: true };
    },
    async DescribeLaunchTemplates(p) {
      const q = parseDescribeLaunchTemplates(p);
      const found = q.ids.length || q.names.length ? [...q.ids.map((id) => findTemplate({ id })), ...q.names.map((name) => findTemplate({ name }))] : o.launchTemplates;
      return {
        launchTemplates: found.map((t) => ({ launchTemplateId: t.id, launchTemplateName: t.name, defaultVersionNumber: 1, latestVersionNumber: 1, createTime: "2026-11-01T00:00:00.000Z", createdBy: `arn:aws:iam::${ACCOUNT}:root` })),
      };
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const requestId = randomUUID();
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const reply = (status: number, xml: string): void => {
      res.writeHead(status, { "content-type": "text/xml;charset=UTF-8", "x-amzn-requestid": requestId });
      res.end(xml);
    };
    const params = new URLSearchParams(req.method === "POST" ? raw.toString() : (req.url ?? "").split("?")[1] ?? "");
    const action = params.get("Action") ?? "";
    const fail = (status: number, code: string, message: string): void => {
      calls.push({ action, error: code });
      reply(status, errorXml(code, message, requestId));
    };
    const auth = checkSigV4(req.method ?? "GET", (req.url ?? "/").split("?")[0] ?? "/", req.headers, raw, secrets);
    if (!auth.ok) return fail(auth.status, auth.code, auth.message);
    if (params.get("Version") !== "2016-11-15") return fail(400, "InvalidParameterValue", `Invalid API version ${params.get("Version") ?? "(none)"}`);
    const run = actions[action];
    if (!run) return fail(400, "InvalidAction", `The action ${action} is not valid for this web service.`);
    if (deny.has(action)) return fail(403, "UnauthorizedOperation", `You are not authorized to perform this operation. User: arn:aws:iam::${ACCOUNT}:user/paddock is not authorized to perform: ec2:${action}`);
    try {
      const fields = await run(params);
      calls.push({ action });
      reply(200, responseXml(action, requestId, fields));
    } catch (err) {
      if (err instanceof Ec2Error) return fail(err.status, err.code, err.message);
      fail(500, "InternalError", "An internal error has occurred");
    }
  };

  const server: Server = createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    instances,
    calls,
    deny,
    close: async () => {
      for (const i of instances.values()) await terminate(i).catch(() => undefined);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** What an instance's boot wrote (its node's log), for a failing test's message. */
export async function bootLog(i: FakeInstance): Promise<string> {
  return readFile(join(i.dir, "boot.log"), "utf8").catch(() => "");
}
