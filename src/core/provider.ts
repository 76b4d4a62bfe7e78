/**
 * Where sessions run. A provider turns a template (a stack of layers) into a running sandbox and
 * runs commands and file operations in it. Lifecycle: `create` → any number of `exec` / file calls
 * → `stop`. After a control-plane restart, `recover` says whether a sandbox recorded earlier is
 * still there. Implementations: `local` (Linux namespaces + overlayfs + cgroups) first; k8s, e2b,
 * daytona, ec2 later. The HTTP client implements this interface too, so tests can swap them.
 *
 * Preconditions every implementation keeps (the provider conformance suite checks them):
 * - `stop` of an unknown or already stopped id resolves `false`; of a running one, `true`.
 * - `exec`, file calls on an unknown or stopped id reject with a PaddockError `not_found`.
 * - Paths given to file calls are resolved inside the sandbox, as the session user would see
 *   them; nothing outside the sandbox is ever reachable through them.
 */
import type { Readable } from "node:stream";
import type { ExecSignals, OutputGate } from "./signals.ts";

export interface ComputeLimits {
  /** CPU in cores (fractions allowed). */
  cpu: number;
  memoryBytes: number;
  /** Maximum number of processes (fork-bomb guard). */
  pids: number;
  /** Maximum bytes the sandbox may write to its filesystem. */
  diskBytes: number;
}

export type SandboxMode =
  /** An interactive session: commands run as the unprivileged session user (uid 1000). */
  | "session"
  /** A template build step: commands run as root of the sandbox's own user namespace. */
  | "build";

/** What a sandbox gets to reach the egress gateway: environment variables and files (mounted read-only). */
export interface EgressAttachment {
  env: Record<string, string>;
  /** Absolute paths inside the sandbox, e.g. /etc/resolv.conf and the gateway's CA certificate. */
  files: { path: string; content: string }[];
}

/**
 * Programs no process in the sandbox may execute (`guardrails.commands.deny`), enforced by the
 * provider inside the sandbox boundary at exec time (invariant 6): whatever starts the program (a
 * shell, `npm run`, `make`, `find -exec`, `xargs`, python/node/perl, a symlink, a copy, the dynamic
 * loader, a multi-call binary such as busybox), the exec fails with a permission error and the
 * denied process's stderr gets `message`. Each denial is recorded (`Provider.guardDenials`).
 *
 * It denies programs, not effects: a different program that does the same thing (python's
 * `os.remove` instead of `rm`, or a modified copy of `rm`) is not stopped. See "Exec guard" in
 * docs/sandbox.md for exactly what is and is not covered.
 */
export interface ExecGuard {
  deny: {
    /** A program name (`rm`: any file by that name, and what the name resolves to in the PATH
     * dirs) or an absolute path (`/usr/bin/rm`: that file only). No tabs or newlines. */
    program: string;
    /** The one line the denied process gets on stderr, e.g.
     * `paddock: 'rm' denied by guardrails.commands.deny (runtime.yml:18)`. Printable, at most 1024 bytes. */
    message: string;
  }[];
}

/** One exec (or read) of a denied program that the guard refused. */
export interface GuardDenial {
  /** ISO 8601, UTC, millisecond precision. */
  time: string;
  /** The denied process's pid as seen inside the sandbox. */
  pid: number;
  /** The deny rule's program (`rm`), or `busybox`/`toybox`, or the dynamic loader's file name. */
  program: string;
  /** The file the process tried to run, as a path inside the sandbox (e.g. `/tmp/d`). */
  path: string;
  /** `same file` | `name` | `same content as /usr/bin/rm` | `direct loader` | `multi-call binary` | `unreadable`. */
  reason: string;
}

export interface SandboxSpec {
  /** Caller-chosen id, unique among live sandboxes of this provider. */
  id: string;
  mode: SandboxMode;
  /** Base filesystem under the layers. */
  base: "host" | "debian-12";
  /** Committed layer ids from the bottom (first) to the top (last). */
  layers: string[];
  compute: ComputeLimits;
  hostname: string;
  /** Environment every command starts with (before per-exec `env`). */
  env: Record<string, string>;
  /**
   * Give the sandbox a network whose only way out is the egress gateway. Called once the
   * sandbox's address is known and before any of its processes exist; absent, the sandbox has
   * loopback only.
   */
  egress?: (sandboxIp: string) => Promise<EgressAttachment>;
  /** Deny rules enforced at exec time inside the sandbox; absent or empty: none. Sessions only
   * (a build runs as root and may need any program). */
  guard?: ExecGuard;
  /**
   * Start the sandbox's writable layer as a copy-on-write copy of this snapshot (a layer made by
   * `Provider.snapshot` from a sandbox on the same `base` and `layers`); absent: empty.
   */
  from?: string;
  /**
   * Long-running services the sandbox itself starts at boot, listed in start order (the caller
   * has sorted them by dependency: a service comes after every service in its `dependsOn`). Each
   * starts once the services it depends on are ready. They are supervised inside the sandbox
   * (restarted on exit up to `restartLimit` times in a row), so they outlive the control plane
   * like everything else in the sandbox, and start again whenever a sandbox boots (from a
   * template or a snapshot). A build sandbox with services stops them cleanly (in reverse order)
   * before `stop(id, { commitAs })` commits its layer.
   */
  services?: ServiceSpec[];
  /**
   * Host directories bound read-only into the sandbox (builds only: an agent package from the
   * installation's local mirror, `--agent-packages`). Mounted over the tmpfs `/run`, so a target
   * under `/run` leaves nothing in the committed layer.
   */
  mounts?: { source: string; target: string }[];
  /**
   * Sessions only: the session user's name and home (same uid and gid) instead of the provider's
   * default (`paddock`, /home/paddock). The sandbox's /etc/passwd and /etc/group name it, its home
   * exists and is the user's, and HOME/USER/LOGNAME say so. The E2B front end asks for `user`.
   */
  sessionUser?: { name: string; home: string };
  /**
   * Providers that cannot use this machine's layer store (`capabilities.layers` false: k8s, e2b,
   * daytona) build the template from this recipe their own way (an image, a provider template, or
   * the steps run at create) and cache it by `templateId`, which changes whenever any step does.
   * Always set by the control plane; the local provider ignores it.
   */
  recipe?: TemplateRecipe;
  /**
   * Remote providers (`capabilities.network` "proxy"): what the sandbox needs to reach Paddock's
   * egress gateway as an HTTPS proxy with per-session credentials. Called once per sandbox before
   * any of its commands run. The provider must also close every other way out of the sandbox
   * (its firewall, NetworkPolicy or allow/deny list), leaving only `RemoteEgressAttachment.allow`.
   * Absent: the sandbox gets no egress at all (the provider closes everything it can).
   */
  remoteEgress?: () => Promise<RemoteEgressAttachment>;
  /** `compute.isolation` (extension): which local isolation tier runs the sandbox; default "namespaces". */
  isolation?: IsolationTier;
}

/** The local provider's isolation tiers: Linux namespaces + seccomp (default), or gVisor's user-space kernel (`runsc`). */
export type IsolationTier = "namespaces" | "gvisor";

/** How to build a template without the local layer store (see `SandboxSpec.recipe`). */
export interface TemplateRecipe {
  /** Content hash of everything below (the template's id): the cache key for a provider's own image/template. */
  templateId: string;
  base: "host" | "debian-12";
  /** The environment's install steps in order (shell commands run with `/bin/sh -c` as root, in `/`). */
  steps: string[];
}

/**
 * A remote sandbox's way out: only through Paddock's egress gateway, named as an HTTPS proxy
 * (TLS to the proxy itself, verified with `caPem`) with credentials that identify this sandbox's
 * session to the gateway. `env` already holds HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY and the
 * CA variables; `files` the CA bundle. The credentials are not a secret of the user's: they only
 * open this session's registration at the gateway, which holds the real secrets.
 */
export interface RemoteEgressAttachment extends EgressAttachment {
  /** `https://<user>:<password>@<host>:<port>` */
  proxyUrl: string;
  /** The only destinations the provider may let the sandbox reach (the gateway's proxy listener). */
  allow: { host: string; port: number }[];
}

/** One service of a sandbox (`services:` in the environment file). */
export interface ServiceSpec {
  /** `[a-z0-9][a-z0-9-]*`, unique in the sandbox. */
  name: string;
  /** Run with `/bin/sh -c` (in `cwd`, default `/`). It must stay in the foreground (no daemonizing). */
  command: string;
  /** A user name (from the sandbox's /etc/passwd) or numeric uid inside the sandbox; never root. */
  user: string;
  cwd?: string;
  env: Record<string, string>;
  /** Ready when 127.0.0.1:port accepts a TCP connection, or when the command exits 0 (run as `user`). */
  ready: { port: number } | { command: string };
  /** How long each start may take to become ready before it counts as a failed start; default 60 000. */
  readyTimeoutMs?: number;
  /** Directories created (owned by `user`, mode 0700) before a start when missing, e.g. a database's data directory. */
  dataDirs: string[];
  /** How many restarts in a row (after exits or missed ready deadlines) before the service is
   * marked failed; a service that stayed ready for a minute has its whole budget again. */
  restartLimit: number;
  /** Names this one needs ready first (already reflected in the order; kept for display). */
  dependsOn: string[];
}

/**
 * `starting`: waiting for its dependencies or for its first ready check to pass; `ready`;
 * `restarting`: it exited (or missed its ready deadline) and is being started again; `failed`:
 * given up (restart limit, a dependency failed, or it cannot start at all: unknown user, data
 * directory it cannot create); `stopped`: stopped with its sandbox.
 */
export type ServiceState = "starting" | "ready" | "restarting" | "failed" | "stopped";

export interface ServiceStatus {
  name: string;
  state: ServiceState;
  /** Restarts after unexpected exits so far. */
  restarts: number;
  /** Its main process (and process group) as seen inside the sandbox; null when not running. */
  pid: number | null;
  /** ISO 8601: when it entered `state`. */
  since: string;
  /** Why it failed or last exited, e.g. `exited with status 1`. */
  message: string | null;
  /** The end of its output (stdout and stderr, at most 64 KiB). */
  logTail: string;
}

export interface SandboxHandle {
  id: string;
  /** The sandbox's address on its link to the gateway, when it has a network. */
  sandboxIp?: string;
  /** What the provider needs to find this sandbox again after a restart (stored by the caller). */
  providerState: Record<string, unknown>;
}

export interface ExecOptions {
  /** Program and arguments; `argv[0]` is looked up in PATH inside the sandbox. */
  argv: string[];
  /** Working directory inside the sandbox; default `/workspace`. */
  cwd?: string;
  /** Extra environment variables for this command. */
  env?: Record<string, string>;
  /** Kill the command's process group after this long; 0 or absent for no limit. */
  timeoutMs?: number;
  /** Bytes for the command's standard input; absent means empty stdin. */
  stdin?: Readable | Uint8Array;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** Aborting kills the command's process group. */
  signal?: AbortSignal;
  /**
   * Signals to deliver to the command's process group while it runs (e.g. a user's Ctrl-C as
   * SIGINT); its exit is then reported as usual. See `ExecSignals`.
   */
  signals?: ExecSignals;
  /**
   * Output flow control: while paused, the provider stops reading the command's output (the
   * command then blocks on its full pipes) instead of the caller buffering it. See `OutputGate`.
   */
  output?: OutputGate;
}

export interface ExecResult {
  /** Exit status; 128+N when killed by signal N; 124 on timeout; 127 when the program was not found; 126 when it could not be run. */
  exitCode: number;
  /** Signal name when the command was killed by one (e.g. "SIGKILL"), else null. */
  signal: string | null;
  timedOut: boolean;
  durationMs: number;
}

export interface FileEntry {
  name: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  /** Permission bits, e.g. 0o644. */
  mode: number;
  mtime: string;
}

/**
 * One entry with what E2B's filesystem service reports (`statFile`, `listTree`). A symlink is
 * described as the link (its own size and time) plus what it resolves to; nothing is read
 * through it.
 */
export interface FileInfo {
  /** Absolute path inside the sandbox (as asked, not with links resolved). */
  path: string;
  name: string;
  type: FileEntry["type"];
  size: number;
  /** Permission bits with setuid, setgid and sticky, e.g. 0o644. */
  mode: number;
  /** Modification time: whole seconds since the epoch and the nanoseconds past them. */
  mtime: { seconds: number; nanos: number };
  /** User and group names from the sandbox's /etc/passwd and /etc/group (the number when unnamed). */
  owner: string;
  group: string;
  /** For a symlink: the absolute path it resolves to inside the sandbox, and that entry's type
   * and mode (`type` null when it does not resolve). */
  symlink?: { target: string; type: FileEntry["type"] | null; mode: number };
}

/** What happened to an entry of a watched directory (inotify's events, named as E2B names them). */
export type FileEventType = "create" | "write" | "remove" | "rename" | "chmod";

export interface FileEvent {
  type: FileEventType;
  /** Path relative to the watched directory, e.g. `sub/a.txt`. */
  name: string;
}

/** A running directory watch (`Provider.watchDir`). */
export interface FileWatch {
  /** Resolves when the watch ends: closed, the directory removed, or (rejects) an error such as
   * an overflowing event queue. */
  done: Promise<void>;
  close(): void;
}

export interface StopOptions {
  /** Keep the sandbox's writable layer as a committed layer with this id (template builds). */
  commitAs?: string;
}

/**
 * What a provider can do, declared up front: the control plane, the router and the conformance
 * suite read it. A caller asking for something a provider lacks gets `unsupported(...)` (a
 * PaddockError `unavailable` naming the provider and the capability), never a silent no-op.
 */
export interface ProviderCapabilities {
  /** The provider type: "local", "k8s", "e2b", "daytona", "ec2". */
  kind: ProviderKind;
  /** Runs on infrastructure the installation controls (local, k8s, ec2); false for third-party clouds (e2b, daytona). */
  selfHosted: boolean;
  /** Starts from this machine's layer store (`SandboxSpec.layers`); otherwise from `SandboxSpec.recipe`. */
  layers: boolean;
  /** How the sandbox reaches the egress gateway: its own link and DNAT (`netns`), or the gateway as an HTTPS proxy with the provider's firewall closing everything else (`proxy`). */
  network: "netns" | "proxy";
  /** `snapshot`/`removeSnapshot` and `SandboxSpec.from`. */
  snapshot: boolean;
  /** The kernel-level exec guard (`SandboxSpec.guard`) is enforced inside the sandbox. */
  execGuard: boolean;
  /** `services:` supervised inside the sandbox. */
  services: boolean;
  /** The E2B-style file operations (statFile … watchDir). */
  fileOps: boolean;
  /** `portUrl` for previews. */
  ports: boolean;
  /** The provider keeps started sandboxes warm itself (agent-sandbox's SandboxWarmPool, a node's pool). */
  warmPool: boolean;
  /** Isolation tiers it can run (`compute.isolation`). */
  isolation: IsolationTier[];
}

export type ProviderKind = "local" | "k8s" | "e2b" | "daytona" | "ec2";

/** A provider's answer to "can you take sessions now?" (routing skips unhealthy ones). */
export interface ProviderHealth {
  ok: boolean;
  /** Why not, or a short note (e.g. "3 nodes ready"). */
  detail: string;
  /** How long the check took. */
  latencyMs: number;
}

export interface Provider {
  readonly name: string;
  readonly capabilities: ProviderCapabilities;
  /** A cheap liveness check of the provider's API (never creates a sandbox). */
  health(): Promise<ProviderHealth>;
  /**
   * Where the preview gateway reaches TCP `port` of the sandbox: a URL (`http://10.0.0.5:3000`,
   * or the provider's own host such as E2B's `getHost`). Needs `capabilities.ports`.
   */
  portUrl?(id: string, port: number): Promise<string>;
  create(spec: SandboxSpec, signal?: AbortSignal): Promise<SandboxHandle>;
  /** After a restart: is the sandbox recorded with this state still running? Cleans up what a dead one held. */
  recover(id: string, providerState: Record<string, unknown>): Promise<"running" | "gone">;
  exec(id: string, opts: ExecOptions): Promise<ExecResult>;
  writeFile(id: string, path: string, data: Uint8Array, opts?: { mode?: number }): Promise<void>;
  readFile(id: string, path: string): Promise<Buffer>;
  listDir(id: string, path: string): Promise<FileEntry[]>;
  stop(id: string, opts?: StopOptions): Promise<boolean>;
  /**
   * Send `signal` (default SIGKILL) to every process of the sandbox except its own init, without
   * starting a process inside it: the way out for a session whose processes fill its pid limit or
   * that is otherwise stuck. With SIGKILL it resolves once they are gone. Rejects `not_found` for
   * an unknown or stopped id.
   * @returns how many processes were signalled.
   */
  killProcesses(id: string, signal?: NodeJS.Signals): Promise<number>;
  /**
   * Every exec the sandbox's guard has denied so far, oldest first (callers dedupe by count).
   * Survives a control-plane restart; gone once the sandbox is stopped. Unknown ids resolve [].
   */
  guardDenials(id: string): Promise<GuardDenial[]>;
  /**
   * Capture the sandbox's writable layer as a read-only layer `layerId`, crash-consistently: every
   * process of the sandbox is frozen (cgroup freezer) for the instant of the copy-on-write capture
   * and then goes on. The snapshot holds exactly what a crash at that instant would have left
   * (writes not yet on disk included; processes, memory and open connections are not captured).
   * Dirty data is written out before the freeze, so `frozenMs` (how long the processes were
   * stopped) does not grow with what the session wrote; the call itself can. Start sandboxes from
   * it with `SandboxSpec.from`; remove it with `removeSnapshot`. Rejects `not_found` for an unknown
   * id, `conflict` when `layerId` exists, `invalid_argument` for a bad `layerId`, and
   * `unavailable` when the sandbox cannot be frozen (it is never left frozen).
   */
  snapshot(id: string, layerId: string): Promise<{ frozenMs: number }>;
  /** Remove a snapshot layer; sandboxes started from it keep their copies. False when there was none. */
  removeSnapshot(layerId: string): Promise<boolean>;
  /**
   * Merge `env` into the environment every later command of the sandbox starts with (a pool
   * member gets its session's placeholders when it is claimed). Returns the new provider state
   * for the caller to store.
   */
  setEnv(id: string, env: Record<string, string>): Promise<Record<string, unknown>>;
  /** The state of the sandbox's services (empty when it has none). Rejects `not_found` for an unknown id. */
  services(id: string): Promise<ServiceStatus[]>;
  /**
   * Resolve once every service is ready (at once when there are none); reject with a
   * PaddockError `unavailable` naming the service and the end of its log when one fails, or
   * when `timeoutMs` passes first.
   */
  waitForServices(id: string, timeoutMs: number): Promise<ServiceStatus[]>;
  /*
   * File operations beyond read/write/list (E2B's filesystem service). Optional: a provider that
   * lacks them cannot serve that front end's file calls, and says so. Each is done by the provider
   * itself, never by running `mkdir`/`mv`/`rm` in the sandbox (a guardrail may deny those
   * programs, and a file operation is not a command), as the session user, and never acts
   * through a symlink at the final component. Paths are absolute; errors are PaddockErrors
   * (`not_found`, `forbidden`, `conflict` for an entry in the way, `invalid_argument`) whose
   * `details.errno` names the cause (e.g. `EEXIST`).
   */
  /** `readFile` as a stream read only as fast as it is consumed; rejects (before any byte) as `readFile` does. */
  readFileStream?(id: string, path: string): Promise<Readable>;
  /** `writeFile` from a stream, never held whole; the file appears (atomically) only once the stream ended. */
  writeFileStream?(id: string, path: string, data: Readable, opts?: { mode?: number }): Promise<void>;
  /** The entry at `path` itself (a symlink is described, not followed). */
  statFile?(id: string, path: string): Promise<FileInfo>;
  /** Entries under the directory `path` down to `depth` levels (1: its own entries), parents
   * before children, each directory's entries by name; symlinked directories are not entered. */
  listTree?(id: string, path: string, depth: number): Promise<FileInfo[]>;
  /** Create the directory and any missing parents. False when it already is a directory. */
  makeDir?(id: string, path: string): Promise<boolean>;
  /** Rename `from` to `to` (replacing an entry there; a symlink is moved or replaced as the link
   * itself), creating `to`'s missing parent directories. */
  moveFile?(id: string, from: string, to: string): Promise<void>;
  /** Remove the entry, a directory with everything in it (never descending through a symlink).
   * False when there was nothing to remove. */
  removeFile?(id: string, path: string): Promise<boolean>;
  /** Watch the directory `path` (and, with `recursive`, every directory below it, including ones
   * created later); resolves once changes made from then on are seen. */
  watchDir?(id: string, path: string, opts: { recursive: boolean; onEvent: (event: FileEvent) => void }): Promise<FileWatch>;
  /**
   * Bytes of memory the sandbox's processes use now (its memory cgroup's usage, page cache and
   * tmpfs included), or null when the provider cannot tell. Optional: pools show it as their cost.
   */
  memoryUsage?(id: string): Promise<number | null>;
  /** Ids of sandboxes this provider is running now. */
  list(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * How a provider type is configured and built (one per kind, exported by its package under
 * src/providers/<kind>/). Installation config names instances (`k8s-prod: { kind: k8s, ... }`);
 * the registry validates each instance's settings with `parseSettings`, reads the credentials it
 * names from the vault, and calls `create`.
 */
export interface ProviderDriver<S = unknown> {
  kind: ProviderKind;
  /** Validate an instance's settings; throw a PaddockError `invalid_argument` saying what is wrong and where (`settings.namespace: …`). */
  parseSettings(raw: unknown): S;
  /** Credential names the instance needs from the vault (e.g. ["apiKey"]); each is stored as vault secret `provider/<instance>/<name>`. */
  credentials: readonly string[];
  /**
   * Those of `credentials` an instance may be configured without (absent: every one is needed).
   * A missing optional credential is simply not in `create`'s `credentials`; the driver refuses
   * there, saying which setting needs it, when the instance's settings do after all (k8s: the
   * `kubeconfig`, unless `settings.inCluster`).
   */
  optionalCredentials?: readonly string[];
  create(instance: { name: string; settings: S; credentials: Record<string, string> }, deps: ProviderDeps): Promise<Provider>;
}

export interface ProviderDeps {
  /** The installation's home ($PADDOCK_HOME): where a provider may keep state of its own. */
  home: string;
  log: (line: string) => void;
}
