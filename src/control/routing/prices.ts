/**
 * The default price table and the cost maths (docs/routing.md, "Prices").
 *
 * Prices are public on-demand list prices in USD, as published by each vendor; they were taken
 * from the vendors' pricing pages as known on the date given (this machine cannot reach them, so
 * they were not re-read when this file was written: check them, and put your own contract prices
 * in providers.yml, `routing.pricePerVcpuHour` / `routing.pricePerGibHour`, which always win).
 *
 * - E2B (https://e2b.dev/pricing, 2025-06): $0.000014 per vCPU-second and $0.0000045 per
 *   GiB-second of RAM, i.e. $0.0504 per vCPU-hour and $0.0162 per GiB-hour.
 * - Daytona (https://www.daytona.io/pricing, 2025-06): $0.0000140 per vCPU-second and
 *   $0.0000045 per GiB-second, i.e. the same hourly figures as E2B.
 * - EC2 (https://aws.amazon.com/ec2/pricing/on-demand/, 2025-06): m7i.large (2 vCPU, 8 GiB),
 *   Linux, us-east-1, $0.1008 per hour. AWS does not price vCPU and memory apart, so the hour is
 *   split in Fargate's ratio (us-east-1: $0.04048 per vCPU-hour to $0.004445 per GB-hour):
 *   $0.0350 per vCPU-hour and $0.00385 per GiB-hour (2 × 0.0350 + 8 × 0.00385 ≈ 0.1008).
 * - local and k8s: 0, the installation's own machines (configure a price to weigh them).
 */
import type { ProviderKind } from "../../core/index.ts";
import type { Price, ProviderRouting } from "./types.ts";

export const DEFAULT_PRICES: Readonly<Record<ProviderKind, Price>> = {
  e2b: { perVcpuHour: 0.0504, perGibHour: 0.0162, source: "default table: E2B list price ($0.000014/vCPU-s, $0.0000045/GiB-s), 2025-06" },
  daytona: { perVcpuHour: 0.0504, perGibHour: 0.0162, source: "default table: Daytona list price ($0.000014/vCPU-s, $0.0000045/GiB-s), 2025-06" },
  ec2: { perVcpuHour: 0.035, perGibHour: 0.00385, source: "default table: EC2 m7i.large us-east-1 on-demand $0.1008/h split in Fargate's vCPU:GiB ratio, 2025-06" },
  k8s: { perVcpuHour: 0, perGibHour: 0, source: "default table: self-hosted cluster, 0 unless configured" },
  local: { perVcpuHour: 0, perGibHour: 0, source: "default table: this machine, 0 unless configured" },
};

const GIB = 1024 ** 3;
const HOUR_MS = 3_600_000;

/** The prices of an instance: its own from providers.yml where set, else the default table's for its kind. */
export function priceOf(kind: ProviderKind, routing: ProviderRouting): Price {
  const base = DEFAULT_PRICES[kind];
  const vcpu = routing.pricePerVcpuHour;
  const gib = routing.pricePerGibHour;
  if (vcpu === undefined && gib === undefined) return base;
  return { perVcpuHour: vcpu ?? base.perVcpuHour, perGibHour: gib ?? base.perGibHour, source: vcpu !== undefined && gib !== undefined ? "providers.yml" : `providers.yml, the rest from the ${base.source}` };
}

/**
 * USD for `durationMs` of a session of `cpu` vCPUs and `memoryBytes`:
 * (cpu × perVcpuHour + GiB × perGibHour) × hours. Rounded to a millionth of a dollar so equal
 * inputs print equally.
 */
export function costUsd(price: Pick<Price, "perVcpuHour" | "perGibHour">, cpu: number, memoryBytes: number, durationMs: number): number {
  const perHour = cpu * price.perVcpuHour + (memoryBytes / GIB) * price.perGibHour;
  return Math.round(perHour * (Math.max(0, durationMs) / HOUR_MS) * 1e6) / 1e6;
}

/** "$0.1234" (four decimals; "$0" for nothing). */
export function formatUsd(usd: number): string {
  return usd === 0 ? "$0" : `$${usd.toFixed(4)}`;
}
