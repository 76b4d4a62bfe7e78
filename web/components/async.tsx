/**
 * Loading data for a page: `useAsync` runs a loader (again when `deps` change, or on `reload()`),
 * aborting the previous one; `Loading` and `ErrorAlert` show its states accessibly.
 */
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError } from "../api.ts";

export interface AsyncState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Load again (keeps the current data on screen meanwhile). */
  reload: () => void;
}

export function useAsync<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): AsyncState<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({ data: undefined, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const abort = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    load(abort.signal).then(
      (data) => !abort.signal.aborted && setState({ data, error: null, loading: false }),
      (error: unknown) => !abort.signal.aborted && setState((s) => ({ data: s.data, error, loading: false })),
    );
    return () => abort.abort();
    // The caller lists what the loader depends on (the loader itself is a new closure each render).
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** The text to show for a failure: the API's message (it says how to fix it), or a generic one. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return "Something went wrong.";
}

/** An error, announced to screen readers (role="alert"). Renders nothing without one. */
export function ErrorAlert({ error, children }: { error?: unknown; children?: ComponentChildren }) {
  if (!error && !children) return null;
  const forbidden = error instanceof ApiError && error.status === 403;
  return (
    <div class="alert" role="alert">
      {children ?? (forbidden ? `You do not have access to this: ${errorText(error)}` : errorText(error))}
    </div>
  );
}

/** A busy indicator with text (screen readers hear it as a status). */
export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <p class="loading" role="status">
      {label}
    </p>
  );
}
