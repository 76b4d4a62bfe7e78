/**
 * What the run changed and whether it passes: the diff against the run's baseline
 * (run.result.diff, +/- coloured, with the files it touches) and the checks' results.
 */
import type { Run, RunCheck } from "../types.ts";
import { duration } from "./session-types.ts";

export function Diff({ run }: { run: Run | null | undefined }) {
  if (!run) return <p class="muted">Changes are measured for agent runs: this session has none.</p>;
  const r = run.result;
  if (!r) return <p class="muted">No turn has finished yet: the diff appears when it does.</p>;
  if (r.diff === null) return <p class="muted">/workspace is no git work tree, so there is no diff.</p>;
  if (r.diff.trim() === "") return <p>No changes.</p>;
  const lines = r.diff.split("\n");
  const added = lines.filter((l) => l.startsWith("+") && !l.startsWith("+++")).length;
  const removed = lines.filter((l) => l.startsWith("-") && !l.startsWith("---")).length;
  return (
    <div>
      <p>
        {r.changedFiles.length} file{r.changedFiles.length === 1 ? "" : "s"} changed: {added} line{added === 1 ? "" : "s"} added, {removed} removed.
      </p>
      {r.changedFiles.length ? (
        <ul class="changed-files" aria-label="Changed files">
          {r.changedFiles.map((f) => (
            <li key={f}>
              <code>{f}</code>
            </li>
          ))}
        </ul>
      ) : null}
      <pre class="code diff" tabIndex={0} aria-label="Diff of the run's changes">
        <code>
          {lines.map((l, i) => (
            <span key={i} class={lineClass(l)}>
              {l}
              {"\n"}
            </span>
          ))}
        </code>
      </pre>
    </div>
  );
}

function lineClass(l: string): string {
  if (l.startsWith("diff --git") || l.startsWith("index ") || l.startsWith("+++") || l.startsWith("---")) return "d-file";
  if (l.startsWith("@@")) return "d-hunk";
  if (l.startsWith("+")) return "d-add";
  if (l.startsWith("-")) return "d-del";
  return "d-ctx";
}

export function Checks({ run }: { run: Run | null | undefined }) {
  const checks: RunCheck[] = run?.result?.checks ?? [];
  if (!run) return <p class="muted">Checks run after an agent's turns: this session has no run.</p>;
  if (!run.result) return <p class="muted">The checks run after the turn.</p>;
  if (checks.length === 0) return <p class="muted">The environment defines no checks (agent.checks).</p>;
  return (
    <table class="checks">
      <caption class="sr-only">Checks: {run.result.checksPassed ? "all passed" : "some failed"}</caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Result</th>
          <th scope="col">Exit code</th>
          <th scope="col">Duration</th>
          <th scope="col">Output (end)</th>
        </tr>
      </thead>
      <tbody>
        {checks.map((c, i) => (
          <tr key={`${i}-${c.name}`} class={c.passed ? "" : "row-bad"}>
            <th scope="row">
              {c.name}
              {c.command !== c.name ? (
                <div>
                  <code class="muted">{c.command}</code>
                </div>
              ) : null}
            </th>
            <td>{c.passed ? <span class="badge badge-ok">passed</span> : <span class="badge badge-bad">failed</span>}</td>
            <td class="num">{c.exitCode}</td>
            <td class="num">{duration(c.durationMs)}</td>
            <td>
              {c.outputTail ? (
                <details>
                  <summary>{lastLine(c.outputTail)}</summary>
                  <pre class="code" tabIndex={0} aria-label={`Output of ${c.name}`}>
                    <code>{c.outputTail}</code>
                  </pre>
                </details>
              ) : (
                <span class="muted">no output</span>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function lastLine(s: string): string {
  const l = s.trimEnd().split("\n").pop() ?? "";
  return l.length > 80 ? `${l.slice(0, 80)}…` : l || "output";
}
