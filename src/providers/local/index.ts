/** The local provider box: Linux sandboxes on this machine. */
export { createLocalProvider, installationScope, RUNSC_STATE, SHARED_FILES } from "./provider.ts";
export type { LocalProviderOptions } from "./provider.ts";
export { detectCgroupLayout, listCgroupIds, cgroupDirs, destroyCgroups, removeCgroupScope, sandboxCgroups, pidsUsage, AGENT_PIDS_RESERVE } from "./cgroups.ts";
export type { CgroupLayout, SandboxCgroups } from "./cgroups.ts";
export { sandboxBinaryPath } from "./launcher.ts";
export { openNetworkManager } from "./network.ts";
export type { AllowedDestination, NetworkManager, NetworkMode, SandboxNetwork } from "./network.ts";
export { GVISOR_CAPABILITIES, gvisorRootDir } from "./gvisor.ts";
