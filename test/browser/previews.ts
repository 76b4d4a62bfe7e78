/**
 * Previews over the HTTP API as a given user (POST /v1/previews, DELETE /v1/previews/:id), and
 * a look at how a preview's host answers, for the browser tests.
 */
import assert from "node:assert/strict";
import type { User } from "./helpers.ts";

/** A preview as the API shows it (`url` without the token). */
export interface PreviewInfo {
  id: string;
  sessionId: string;
  port: number;
  expiresAt: string;
  revokedAt: string | null;
  snapshotId: string | null;
  url: string;
}

export interface CreatedPreview {
  id: string;
  /** `http://<port>-<id>.preview.localhost:<server port>/?paddock_preview=<token>`: the URL to hand out. */
  url: string;
  expiresAt: string;
  preview: PreviewInfo;
}

async function call(apiUrl: string, user: User, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${user.token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

export async function createPreview(
  apiUrl: string,
  user: User,
  req: { session: string; port: number; ttl?: string; public?: boolean; command?: string },
): Promise<CreatedPreview> {
  const res = await call(apiUrl, user, "POST", "/v1/previews", req);
  const text = await res.text();
  assert.ok(res.ok, `POST /v1/previews ${JSON.stringify(req)} answered ${res.status}: ${text}`);
  const { preview, url } = JSON.parse(text) as { preview: PreviewInfo; token: string; url: string };
  assert.match(url, new RegExp(`^http://${req.port}-${preview.id}\\.preview\\.localhost:\\d+/\\?paddock_preview=[^&]+$`), url);
  return { id: preview.id, url, expiresAt: preview.expiresAt, preview };
}

export async function getPreview(apiUrl: string, user: User, id: string): Promise<PreviewInfo> {
  const res = await call(apiUrl, user, "GET", `/v1/previews/${encodeURIComponent(id)}`);
  const text = await res.text();
  assert.ok(res.ok, `GET /v1/previews/${id} answered ${res.status}: ${text}`);
  return JSON.parse(text) as PreviewInfo;
}

export async function revokePreview(apiUrl: string, user: User, id: string): Promise<void> {
  const res = await call(apiUrl, user, "DELETE", `/v1/previews/${encodeURIComponent(id)}`);
  assert.ok(res.ok, `DELETE /v1/previews/${id} answered ${res.status}: ${await res.text()}`);
}

/** The preview URL without its token (what the address bar shows after the token was exchanged). */
export function withoutToken(previewUrl: string): string {
  const u = new URL(previewUrl);
  u.searchParams.delete("paddock_preview");
  return u.toString();
}
