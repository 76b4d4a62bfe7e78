/**
 * The guard box: who is calling (principals, tokens), what they may do (roles → permissions per
 * environment), what a submitted command would run (shell analysis against guardrails.commands),
 * and the hash-chained audit log of all of it. Below the control plane, above the store.
 */
export { Identities, ADMIN_ROLE, type NewPrincipal } from "./identity.ts";
export { mintToken, parseToken } from "./tokens.ts";
export { effectivePermissions, rolePermissions, describePermissions, isAdmin, PERMISSION_ORDER, type Permission, type Requirement } from "./rbac.ts";
export { AuditLog, canonical, REDACTED_SECRET, secretScrubber, type AuditEntry, type AuditProblem, type AuditVerification } from "./audit.ts";
export {
  createCommandChecker,
  BASIC_TOOLS,
  DEFAULT_DEPLOY_COMMANDS,
  DEFAULT_PROTECTED_BRANCHES,
  type CommandChecker,
  type CommandPolicy,
  type CommandVerdict,
  type ProgramUse,
  type RuleLocator,
  type RuleRef,
} from "./commands.ts";
