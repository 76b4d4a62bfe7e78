/**
 * A small client-side router over the History API: the UI's pages live under /ui/, the server
 * answers every /ui/* path with the same index.html, and this picks the page. Links are real
 * `<a href>` elements (middle-click, copy link and keyboard work); a plain left click is turned
 * into a history push without a reload.
 */
import type { ComponentChildren, JSX } from "preact";
import { useEffect, useState } from "preact/hooks";

const NAVIGATE = "paddock:navigate";

/** Go to a path inside the UI without reloading (`replace` keeps the history entry count). */
export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  window.dispatchEvent(new Event(NAVIGATE));
}

/** The current path and query; re-renders the caller when they change. */
export function useLocation(): { path: string; search: URLSearchParams } {
  const read = () => ({ path: location.pathname, search: new URLSearchParams(location.search) });
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const update = () => setLoc(read());
    window.addEventListener("popstate", update);
    window.addEventListener(NAVIGATE, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(NAVIGATE, update);
    };
  }, []);
  return loc;
}

/**
 * The parameters of `path` against `pattern` (`/ui/runs/:id`), or null when it does not match.
 * A trailing slash is ignored on both; parameters are percent-decoded.
 */
export function matchPath(pattern: string, path: string): Record<string, string> | null {
  const a = pattern.replace(/\/+$/, "").split("/");
  const b = path.replace(/\/+$/, "").split("/");
  if (a.length !== b.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < a.length; i++) {
    const p = a[i] ?? "";
    const v = b[i] ?? "";
    if (p.startsWith(":")) {
      if (!v) return null;
      try {
        params[p.slice(1)] = decodeURIComponent(v);
      } catch {
        return null;
      }
    } else if (p !== v) return null;
  }
  return params;
}

type AnchorProps = Omit<JSX.HTMLAttributes<HTMLAnchorElement>, "href"> & { href: string; children?: ComponentChildren };

/** An in-app link: a real anchor; plain left clicks navigate without a reload. */
export function Link({ href, children, onClick, ...rest }: AnchorProps) {
  const click = (e: JSX.TargetedMouseEvent<HTMLAnchorElement>) => {
    if (typeof onClick === "function") onClick(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={click} {...rest}>
      {children}
    </a>
  );
}
