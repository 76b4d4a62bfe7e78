import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_DRIVERS } from "../../src/control/drivers.ts";

// The shipped drivers are lazy descriptions (drivers.ts): their kind, credentials and settings
// parser must be the packages' own, or a credential would be stored under the wrong name.
const packages = {
  k8s: async () => (await import("../../src/providers/k8s/index.ts")).k8sDriver,
  e2b: async () => (await import("../../src/providers/e2b/index.ts")).e2bDriver,
  daytona: async () => (await import("../../src/providers/daytona/index.ts")).daytonaDriver,
  ec2: async () => (await import("../../src/providers/ec2/index.ts")).ec2Driver,
} as const;

void test("every shipped driver describes its package's driver exactly", async () => {
  assert.deepEqual(DEFAULT_DRIVERS.map((d) => d.kind).sort(), Object.keys(packages).sort());
  for (const lazy of DEFAULT_DRIVERS) {
    const real = await packages[lazy.kind as keyof typeof packages]();
    assert.equal(real.kind, lazy.kind);
    assert.deepEqual([...lazy.credentials], [...real.credentials], `${lazy.kind} credentials`);
    assert.deepEqual([...(lazy.optionalCredentials ?? [])], [...(real.optionalCredentials ?? [])], `${lazy.kind} optional credentials`);
    assert.equal(lazy.parseSettings, real.parseSettings, `${lazy.kind} settings parser`);
  }
});
