/**
 * The webhook route, in the route-table style of routes.ts. It is public: the sender has no API
 * token, and the signature over the raw body (checked by `Webhooks`, src/control/webhooks.ts) is
 * its authentication. `Webhooks` audits every delivery itself, refused ones included, because
 * the server's own audit of a call needs a principal. See docs/triggers.md.
 */
import { z } from "zod";
import type { ControlPlane } from "../control/index.ts";
import type { Webhooks } from "../control/webhooks.ts";
import type { Route } from "./routes.ts";

export const HookParams = z.object({
  environment: z.string().describe("The environment whose triggers: names the trigger."),
  trigger: z.string().describe("The trigger's name."),
});

export const HookAnswer = z
  .object({
    run: z.string().nullable().describe("The run started, or null (duplicate or ignored)."),
    session: z.string().nullable().optional().describe("The run's session, when it has one yet."),
    duplicate: z.boolean().optional().describe("True (status 200) when this delivery, or the same signed bytes, was received before: no new run."),
    ignored: z.boolean().optional().describe("True when the event is not in the trigger's events (or is a ping)."),
    reason: z.string().optional(),
  })
  .describe("202 with the run (or ignored: true), 200 with duplicate: true; refusals use the usual error shape (401 signature or timestamp, 403 principal, 404 trigger, 413 size, 503 secret unset).");

function webhooksOf(cp: ControlPlane): Webhooks {
  return cp.webhooks;
}

export function hookRoutes(): Route[] {
  return [
    {
      method: "POST",
      path: "/v1/hooks/:environment/:trigger",
      operationId: "receiveWebhook",
      access: { kind: "public" },
      summary:
        "Receive a signed webhook (PagerDuty, Sentry, GitHub or X-Paddock-Signature) for one of an environment's triggers: verified, de-duplicated and, when its event counts, answered with the agent run it started.",
      params: HookParams,
      body: "binary",
      response: { status: 202, schema: HookAnswer },
      handler: async ({ cp, params, req, body, reply }) => {
        const answer = await webhooksOf(cp).receive({
          environment: params.environment ?? "",
          trigger: params.trigger ?? "",
          headers: req.headers,
          rawBody: body as Buffer,
        });
        reply.code(answer.status);
        return answer.body;
      },
    },
  ];
}
