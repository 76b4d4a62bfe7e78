/**
 * The start page, the non-engineer way in: pick an environment (those the user may write that
 * have an agent), an agent, write what it should do, Start. POST /v1/runs, then the run's page.
 * A user who may not write anywhere is told they can only look, and gets no form.
 */
import { useState } from "preact/hooks";
import type { JSX } from "preact";
import { get, post, seg } from "../api.ts";
import { ErrorAlert, Loading, errorText, useAsync } from "../components/async.tsx";
import { Page } from "../components/page.tsx";
import { useMe, writableEnvironments } from "../me.tsx";
import { Link, navigate } from "../router.tsx";
import { agentsOf, type EnvironmentDetail, type Run } from "../types.ts";
import { RecentRuns } from "./all-runs.tsx";

/** Environments the user may write, with the agents each installs (from its current version). */
async function startable(names: string[], signal: AbortSignal): Promise<{ name: string; agents: string[] }[]> {
  const details = await Promise.all(names.map((n) => get<EnvironmentDetail>(`/v1/environments/${seg(n)}`, signal).catch(() => null)));
  return details.flatMap((d) => {
    const agents = d?.current?.buildStatus === "ready" ? agentsOf(d.current.spec) : [];
    return d && agents.length > 0 ? [{ name: d.environment.name, agents }] : [];
  });
}

export function StartPage() {
  const me = useMe();
  const writable = writableEnvironments(me);
  return (
    <Page title="Start an agent">
      {writable.length === 0 ? (
        <p class="notice">
          You can look at environments, runs and the audit log, but you cannot start agents anywhere. Ask an administrator for write access to an environment.
        </p>
      ) : (
        <StartForm writable={writable} />
      )}
      <section aria-labelledby="recent-runs">
        <h2 id="recent-runs">Recent runs</h2>
        <RecentRuns limit={10} />
      </section>
    </Page>
  );
}

function StartForm({ writable }: { writable: string[] }) {
  const envs = useAsync((signal) => startable(writable, signal), [writable.join("\n")]);
  const [environment, setEnvironment] = useState("");
  const [agent, setAgent] = useState("");
  const [prompt, setPrompt] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (envs.loading && !envs.data) return <Loading label="Loading environments…" />;
  if (envs.error) return <ErrorAlert error={envs.error} />;
  const list = envs.data ?? [];
  if (list.length === 0) {
    return (
      <p class="notice">
        None of the environments you can use has an agent set up yet. An engineer adds one with <code>agent:</code> in the environment file (see{" "}
        <Link href="/ui/environments">Environments</Link>).
      </p>
    );
  }
  const env = list.find((e) => e.name === environment) ?? list[0];
  const agents = env?.agents ?? [];
  const chosenAgent = agents.includes(agent) ? agent : (agents[0] ?? "");
  const submit = async (e: JSX.TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    if (!env) return;
    if (!prompt.trim()) {
      setError("Write what the agent should do in Prompt.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const run = await post<Run>("/v1/runs", { environment: env.name, agent: chosenAgent, prompt });
      navigate(`/ui/runs/${encodeURIComponent(run.id)}`);
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
    }
  };
  return (
    <form class="card form" onSubmit={(e) => void submit(e)}>
      {error ? (
        <div class="alert" role="alert">
          {error}
        </div>
      ) : null}
      <div class="field">
        <label for="start-environment">Environment</label>
        <select id="start-environment" value={env?.name} onChange={(e) => setEnvironment(e.currentTarget.value)}>
          {list.map((e) => (
            <option key={e.name} value={e.name}>
              {e.name}
            </option>
          ))}
        </select>
      </div>
      <div class="field">
        <label for="start-agent">Agent</label>
        <select id="start-agent" value={chosenAgent} onChange={(e) => setAgent(e.currentTarget.value)}>
          {agents.map((a) => (
            <option key={a} value={a}>
              {a}
            </option>
          ))}
        </select>
      </div>
      <div class="field">
        <label for="start-prompt">Prompt</label>
        <textarea id="start-prompt" rows={6} required aria-describedby="start-prompt-hint" value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} />
        <p id="start-prompt-hint" class="hint">
          Describe the task in plain words, e.g. “The checkout test fails on main; find out why and fix it.”
        </p>
      </div>
      <button type="submit" class="button" disabled={busy}>
        Start
      </button>
    </form>
  );
}
