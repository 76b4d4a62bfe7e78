/** Small presentational pieces shared by the pages (and the session pages): times, states, code. */
import type { ComponentChildren } from "preact";

const TONES: Record<string, "ok" | "bad" | "busy" | "idle" | "warn"> = {
  ready: "ok", running: "busy", starting: "busy", building: "busy", idle: "idle", done: "ok", allowed: "ok", approved: "ok",
  failed: "bad", denied: "bad", lost: "bad", cancelled: "idle", stopped: "idle", expired: "warn", pending: "warn", info: "idle",
};

/** A state or decision as a coloured label (the text carries the meaning, not the colour). */
export function StateBadge({ state }: { state: string }) {
  return <span class={`badge badge-${TONES[state] ?? "idle"}`}>{state}</span>;
}

/** "3 min ago", with the exact time on hover and for assistive technology. */
export function Time({ iso }: { iso: string | null | undefined }) {
  if (!iso) return <span>—</span>;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return <span>{iso}</span>;
  return (
    <time dateTime={iso} title={new Date(t).toLocaleString()}>
      {relative(Date.now() - t)}
    </time>
  );
}

function relative(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 0) return `in ${relative(-ms).replace(/ ago$/, "")}`;
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 36) return `${h} h ago`;
  return `${Math.round(h / 24)} d ago`;
}

/** Preformatted text (file sources, logs) in a scrollable, focusable box. */
export function CodeBlock({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <pre class="code" tabIndex={0} aria-label={label}>
      <code>{children}</code>
    </pre>
  );
}

/** A short id for tables (the full one in the title). */
export function ShortId({ id }: { id: string }) {
  return (
    <code title={id} class="id">
      {id.length > 18 ? `${id.slice(0, 16)}…` : id}
    </code>
  );
}
