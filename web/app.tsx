/**
 * The app shell: who is logged in (GET /v1/whoami), a skip link, the header with the nav and
 * "Log out", and the page the path selects. The login page is rendered without the shell.
 */
import { useEffect, useState } from "preact/hooks";
import { api, get } from "./api.ts";
import { ErrorAlert, Loading } from "./components/async.tsx";
import { Page } from "./components/page.tsx";
import { MeContext } from "./me.tsx";
import { LoginPage } from "./pages/login.tsx";
import { Link, matchPath, navigate, useLocation } from "./router.tsx";
import { navLinks, routes } from "./routes.tsx";
import type { Me } from "./types.ts";

export function App() {
  const { path } = useLocation();
  useEffect(() => {
    if (path === "/" || path === "/ui") navigate("/ui/", true);
  }, [path]);
  if (path === "/ui/login" || path === "/ui/login/") return <LoginPage />;
  return <Shell path={path} />;
}

function Shell({ path }: { path: string }) {
  const [me, setMe] = useState<Me | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    // A 401 goes to the login page (api.ts); anything else is shown.
    get<Me>("/v1/whoami").then(setMe, setError);
  }, []);
  if (!me) {
    return (
      <main id="main" class="main">
        {error ? <ErrorAlert error={error} /> : <Loading label="Signing in…" />}
      </main>
    );
  }
  return (
    <MeContext.Provider value={me}>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/ui/" class="brand" aria-label="Paddock home">
          Paddock
        </Link>
        <nav aria-label="Main">
          <ul>
            {navLinks.map((l) => (
              <li key={l.href}>
                <Link href={l.href} aria-current={l.match(path) ? "page" : undefined}>
                  {l.text}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class="who-name" title={`role ${me.principal.role}`}>
            {me.principal.name}
          </span>
          <LogoutButton />
        </div>
      </header>
      <main id="main" class="main" tabIndex={-1}>
        <CurrentPage path={path} />
      </main>
    </MeContext.Provider>
  );
}

function CurrentPage({ path }: { path: string }) {
  for (const r of routes) {
    const params = matchPath(r.path, path);
    if (params) {
      const C = r.component;
      // A fresh component per path: state of one page never leaks into the next.
      return <C key={path} params={params} />;
    }
  }
  return (
    <Page title="Page not found">
      <p>
        There is no page at <code>{path}</code>. <Link href="/ui/">Go to the start page</Link>.
      </p>
    </Page>
  );
}

function LogoutButton() {
  const [busy, setBusy] = useState(false);
  const logout = async () => {
    setBusy(true);
    try {
      await api("POST", "/ui/logout", { allowUnauthorized: true });
    } finally {
      location.assign("/ui/login");
    }
  };
  return (
    <button type="button" class="button secondary" disabled={busy} onClick={() => void logout()}>
      Log out
    </button>
  );
}
