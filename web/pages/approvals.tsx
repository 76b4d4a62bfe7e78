/**
 * Approvals: commands a guardrail (`guardrails.commands.ask`) holds until a person answers. Those
 * the user may answer (a person with write on the environment, deploy too for a deploying
 * command, not the one who asked) get "Approve" and "Deny"; the others are listed read-only.
 */
import { useEffect, useState } from "preact/hooks";
import { get, post, query, seg } from "../api.ts";
import { ErrorAlert, Loading, errorText, useAsync } from "../components/async.tsx";
import { ShortId, StateBadge, Time } from "../components/format.tsx";
import { Page } from "../components/page.tsx";
import { can, useMe } from "../me.tsx";
import { Link } from "../router.tsx";
import type { Approval, Me } from "../types.ts";

/** Refresh pending approvals this often: an agent waits on each of them. */
const REFRESH_MS = 5000;

/** May `me` answer `a`? The server decides again; this only keeps buttons off that would fail. */
export function mayAnswer(me: Me, a: Approval): boolean {
  if (me.principal.kind !== "human" || a.state !== "pending") return false;
  if (a.requestedByKind === "human" && a.requestedBy === me.principal.name) return false;
  return can(me, a.environment, "write") && (!a.deploying || can(me, a.environment, "deploy"));
}

export function ApprovalsPage() {
  const pending = useAsync((signal) => get<Approval[]>(`/v1/approvals${query({ state: "pending" })}`, signal), []);
  const recent = useAsync((signal) => get<Approval[]>("/v1/approvals", signal), []);
  const { reload } = pending;
  useEffect(() => {
    const t = setInterval(reload, REFRESH_MS);
    return () => clearInterval(t);
  }, [reload]);
  const answered = () => {
    pending.reload();
    recent.reload();
  };
  return (
    <Page title="Approvals">
      <p class="lead">Commands waiting for a person to allow or refuse them. The agent or person who ran the command waits until you answer, or until it expires.</p>
      <section aria-labelledby="pending-approvals">
        <h2 id="pending-approvals">Waiting</h2>
        <ErrorAlert error={pending.error} />
        {!pending.data ? pending.error ? null : <Loading label="Loading approvals…" /> : <PendingTable approvals={pending.data} onAnswered={answered} />}
      </section>
      <section aria-labelledby="past-approvals">
        <h2 id="past-approvals">Answered</h2>
        {recent.data ? <PastTable approvals={recent.data.filter((a) => a.state !== "pending").slice(0, 50)} /> : <ErrorAlert error={recent.error} />}
      </section>
    </Page>
  );
}

function PendingTable({ approvals, onAnswered }: { approvals: Approval[]; onAnswered: () => void }) {
  if (approvals.length === 0) return <p class="muted">Nothing is waiting for approval.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption>Commands waiting for approval</caption>
        <thead>
          <tr>
            <th scope="col">Command</th>
            <th scope="col">Environment</th>
            <th scope="col">Asked by</th>
            <th scope="col">Why it needs approval</th>
            <th scope="col">Expires</th>
            <th scope="col">Answer</th>
          </tr>
        </thead>
        <tbody>
          {approvals.map((a) => (
            <PendingRow key={a.id} approval={a} onAnswered={onAnswered} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function PendingRow({ approval: a, onAnswered }: { approval: Approval; onAnswered: () => void }) {
  const me = useMe();
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const answer = async (verb: "approve" | "deny") => {
    setBusy(true);
    setError(null);
    try {
      await post(`/v1/approvals/${seg(a.id)}/${verb}`, reason.trim() ? { reason: reason.trim() } : {});
      onAnswered();
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
    }
  };
  const command = a.argv.join(" ");
  return (
    <tr>
      <td>
        <code class="command">{command}</code>
        {a.deploying ? <span class="badge badge-warn">deploys</span> : null}
      </td>
      <td>
        <Link href={`/ui/environments/${encodeURIComponent(a.environment)}`}>{a.environment}</Link>
        <div>
          <Link href={`/ui/sessions/${encodeURIComponent(a.sessionId)}`} aria-label={`its session, ${a.sessionId}`}>
            its session
          </Link>
        </div>
      </td>
      <td>{a.requestedByKind === "agent" ? `${a.requestedBy} (agent) for ${a.onBehalfOf ?? "?"}` : a.requestedBy}</td>
      <td>{a.rule}</td>
      <td>
        <Time iso={a.expiresAt} />
      </td>
      <td>
        {mayAnswer(me, a) ? (
          <div class="answer">
            <input type="text" aria-label={`Reason for answering ${command}`} placeholder="Reason (optional)" value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
            <button type="button" class="button" disabled={busy} onClick={() => void answer("approve")}>
              Approve
            </button>
            <button type="button" class="button danger" disabled={busy} onClick={() => void answer("deny")}>
              Deny
            </button>
            {error ? (
              <div class="alert" role="alert">
                {error}
              </div>
            ) : null}
          </div>
        ) : (
          <span class="muted">{a.requestedBy === me.principal.name ? "You asked: someone else answers" : "You cannot answer this"}</span>
        )}
      </td>
    </tr>
  );
}

function PastTable({ approvals }: { approvals: Approval[] }) {
  if (approvals.length === 0) return <p class="muted">None yet.</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption>Answered and expired approvals, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Approval</th>
            <th scope="col">Command</th>
            <th scope="col">Environment</th>
            <th scope="col">Asked by</th>
            <th scope="col">Answer</th>
            <th scope="col">By</th>
            <th scope="col">Reason</th>
            <th scope="col">When</th>
          </tr>
        </thead>
        <tbody>
          {approvals.map((a) => (
            <tr key={a.id}>
              <td>
                <ShortId id={a.id} />
              </td>
              <td>
                <code class="command">{a.argv.join(" ")}</code>
              </td>
              <td>{a.environment}</td>
              <td>{a.requestedBy}</td>
              <td>
                <StateBadge state={a.state} />
              </td>
              <td>{a.decidedBy ?? "—"}</td>
              <td>{a.reason ?? "—"}</td>
              <td>
                <Time iso={a.decidedAt ?? a.expiresAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
