/**
 * Provider errors are stored (a session's endReason, its route's skips, the breaker's last
 * error), audited and returned; a remote provider's error may quote the URL of the gateway proxy
 * it was given, whose userinfo is the session's proxy credential (`https://pdk…:<password>@…`),
 * or any other URL with a password in it. Such text goes through `scrubUrlCredentials` first.
 */

/**
 * `scheme://user:pass@host` → `scheme://[redacted]@host`, wherever it occurs in `text`. The
 * userinfo is everything between `://` and the first `@` before the next `/`, `?`, `#`, quote or
 * white space (RFC 3986: a raw `/` ends the authority, so it cannot hide a later `@`).
 */
export function scrubUrlCredentials(text: string): string {
  return text.replace(/\b([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^\s/?#@"'<>`]+@/g, "$1[redacted]@");
}
