/** An `ec2` provider instance's settings (installation config), validated with one located message per problem. */
import { z } from "zod";
import { invalid } from "../../core/errors.ts";

const schema = z
  .object({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, "an AWS region such as eu-west-1").describe("AWS region of the hosts"),
    launchTemplateId: z.string().regex(/^lt-[0-9a-f]{8,17}$/, "a launch template id such as lt-0abc12345678def90").optional().describe("launch template for new hosts (or launchTemplateName)"),
    launchTemplateName: z.string().min(3).max(128).regex(/^[a-zA-Z0-9().\-/_]+$/, "a launch template name (3–128 of A–Z a–z 0–9 ( ) . - / _)").optional(),
    launchTemplateVersion: z.string().regex(/^(\$Latest|\$Default|\d+)$/, "$Latest, $Default or a version number").default("$Default"),
    maxHosts: z.number().int().min(1).max(1000).default(4).describe("hosts this instance may run at once"),
    sessionsPerHost: z.number().int().min(1).max(1000).default(8).describe("sandboxes per host before another host is launched"),
    endpoint: z.url({ protocol: /^https?$/ }).optional().describe("EC2 API endpoint override (a VPC endpoint, or a test's fake)"),
    nodePort: z.number().int().min(1).max(65535).default(7443).describe("TCP port the node listens on"),
    address: z.enum(["private", "public"]).default("private").describe("which address of a host the control plane dials"),
    idleGraceMs: z.number().int().min(0).default(600_000).describe("a host with no sandboxes is terminated after this long"),
    bootTimeoutMs: z.number().int().min(1000).default(600_000).describe("how long a new host may take to answer over mTLS"),
    nodeCommand: z.string().regex(/^[A-Za-z0-9_./-]+$/).default("paddock").describe("the paddock command on the image"),
  })
  .strict()
  .refine((s) => (s.launchTemplateId === undefined) !== (s.launchTemplateName === undefined), { message: "name exactly one of launchTemplateId and launchTemplateName", path: ["launchTemplateId"] });

export type Ec2Settings = z.infer<typeof schema>;

export function parseEc2Settings(raw: unknown): Ec2Settings {
  const r = schema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => `settings${i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${String(p)}`)).join("")}: ${i.message}`);
  throw invalid(`ec2 provider: ${lines.join("; ")}`, { issues: lines });
}
