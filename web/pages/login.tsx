/**
 * The login page: an API token (from an admin, `paddock user add` / `paddock user token`) is
 * exchanged for the `paddock_session` cookie by POST /ui/login; the token itself is not kept by
 * the browser. Afterwards the page goes where the user was headed (`?next=`, same-site paths only).
 */
import { useState } from "preact/hooks";
import type { JSX } from "preact";
import { api } from "../api.ts";
import { errorText } from "../components/async.tsx";

/** Only a path inside the UI: an absolute or protocol-relative URL would be an open redirect. */
export function safeNext(next: string | null): string {
  return next && /^\/ui\/[^\\]*$/.test(next) && !next.startsWith("//") && !next.startsWith("/ui/login") ? next : "/ui/";
}

export function LoginPage() {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  document.title = "Log in · Paddock";
  const submit = async (e: JSX.TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    setError(null);
    if (!token.trim()) {
      setError("Enter your API token.");
      return;
    }
    setBusy(true);
    try {
      await api("POST", "/ui/login", { body: { token: token.trim() }, allowUnauthorized: true });
      location.assign(safeNext(new URLSearchParams(location.search).get("next")));
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
    }
  };
  return (
    <main id="main" class="login">
      <form class="card login-card" onSubmit={(e) => void submit(e)} method="post" action="/ui/login">
        <h1>Log in to Paddock</h1>
        <p class="muted">Paste the API token an administrator gave you. It starts with <code>pdk_</code>.</p>
        {error ? (
          <div class="alert" role="alert">
            {error}
          </div>
        ) : null}
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" spellcheck={false} required value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <button type="submit" class="button" disabled={busy}>
          Log in
        </button>
      </form>
    </main>
  );
}
