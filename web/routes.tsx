/**
 * The UI's pages, by path: the app shell renders the first entry whose pattern matches. Patterns
 * are `/ui/...` with `:name` parameters (passed to the page as `params`).
 *
 * The run and session pages (web/pages/run*.tsx, web/pages/session*.tsx) are built separately:
 * their entries are marked below; replace the components there, keep the paths (other pages link
 * to `/ui/runs/<id>` and `/ui/sessions/<id>`).
 */
import type { ComponentType } from "preact";
import { StartPage } from "./pages/start.tsx";
import { EnvironmentsPage } from "./pages/environments.tsx";
import { EnvironmentPage } from "./pages/environment.tsx";
import { AllRunsPage } from "./pages/all-runs.tsx";
import { ApprovalsPage } from "./pages/approvals.tsx";
import { AuditPage } from "./pages/audit.tsx";
import { RunPage } from "./pages/run.tsx";
import { SessionPage } from "./pages/session.tsx";
import { DashboardPage } from "./components/charts.tsx";

export interface PageProps {
  params: Record<string, string>;
}

export interface RouteEntry {
  path: string;
  component: ComponentType<PageProps>;
}

export const routes: RouteEntry[] = [
  { path: "/ui", component: StartPage },
  { path: "/ui/environments", component: EnvironmentsPage },
  { path: "/ui/environments/:name", component: EnvironmentPage },
  { path: "/ui/runs", component: AllRunsPage },
  { path: "/ui/approvals", component: ApprovalsPage },
  { path: "/ui/audit", component: AuditPage },
  // ── The session-page helper's pages (web/pages/run*.tsx, web/pages/session*.tsx) ──
  { path: "/ui/runs/:id", component: RunPage },
  { path: "/ui/sessions/:id", component: SessionPage },
  { path: "/ui/dashboard", component: DashboardPage },
];

/** The nav's links, in order (the selector contract: these texts exactly). */
export const navLinks: { href: string; text: string; match: (path: string) => boolean }[] = [
  { href: "/ui/", text: "Start", match: (p) => p === "/ui" || p === "/ui/" },
  { href: "/ui/environments", text: "Environments", match: (p) => p.startsWith("/ui/environments") },
  { href: "/ui/runs", text: "Runs", match: (p) => p.startsWith("/ui/runs") || p.startsWith("/ui/sessions") },
  { href: "/ui/approvals", text: "Approvals", match: (p) => p.startsWith("/ui/approvals") },
  { href: "/ui/audit", text: "Audit", match: (p) => p.startsWith("/ui/audit") },
  { href: "/ui/dashboard", text: "Dashboard", match: (p) => p.startsWith("/ui/dashboard") },
];
