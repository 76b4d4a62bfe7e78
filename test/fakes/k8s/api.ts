/**
 * The fake cluster's public types (see index.ts). Kept apart so the server's parts can import them
 * without importing the server.
 */
import type { Readable, Writable } from "node:stream";

/** A stored Kubernetes object as JSON (apiVersion, kind, metadata, spec, status …). */
export type KubeObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: KubeMeta;
};

export interface KubeMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  generateName?: string;
  [key: string]: unknown;
}

/** The streams of one exec, as the kubelet gets them. */
export interface ExecStreams {
  /** Null when the client asked for no stdin. Ends when the client closes its stdin. */
  stdin: Readable | null;
  stdout: Writable;
  stderr: Writable;
  tty: boolean;
}

/**
 * What runs a pod's containers. The fake API server calls it; the pod's phase follows what it
 * does (startPod resolves → Running, rejects → Failed).
 */
export interface FakeKubelet {
  /** Start the pod; resolves with its IP. */
  startPod(pod: KubeObject): Promise<{ podIP: string }>;
  /**
   * Run argv in the pod's container; resolves with the exit code (126/127 as a shell would), and
   * only once everything the command printed has been written to `streams` (the exit status goes
   * out after it: a write after that is a write after end).
   */
  exec(pod: KubeObject, container: string, argv: string[], streams: ExecStreams): Promise<number>;
  /** Stop the pod and release what it holds (called on delete; idempotent). */
  stop(pod: KubeObject): Promise<void>;
}

export interface FakeCluster {
  /** A kubeconfig (YAML string) pointing at the fake over HTTPS with a bearer token, for KubeConfig.loadFromString. */
  kubeconfig: string;
  url: string;
  /** Every request the fake served: method, path (the request target: path and query string), status — for tests to assert on. */
  requests: { method: string; path: string; status: number }[];
  /** Objects currently stored (by apiVersion/kind/namespace/name), for assertions. */
  objects(kind: string, namespace?: string): Record<string, unknown>[];
  close(): Promise<void>;
}

export interface FakeClusterOptions {
  /** Serve the agents.x-k8s.io and extensions.agents.x-k8s.io CRDs (pinned under crds/) and run their controller. */
  agentSandbox?: boolean;
  /** Serve snapshot.storage.k8s.io/v1 VolumeSnapshots (and PersistentVolumeClaims). */
  volumeSnapshots?: boolean;
  /** Runs the pods; absent: pods get a made-up IP and exec answers with an error status (no containers). */
  kubelet?: FakeKubelet;
  /** RuntimeClass handlers the node offers (absent: any); a pod whose RuntimeClass names another stays Pending with a FailedCreatePodSandBox event. */
  runtimeHandlers?: string[];
}
