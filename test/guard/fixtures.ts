// Shared policies and a locator for the command-check tests: the file the rules come from is
// runtime.yml with `allow:` at line 12 (entries from 13), deny at 18–19, ask at 20.
import type { CommandPolicy, RuleLocator } from "../../src/guard/commands.ts";
import { DEFAULT_DEPLOY_COMMANDS, DEFAULT_PROTECTED_BRANCHES } from "../../src/guard/commands.ts";

export const base: CommandPolicy = {
  allow: [], allowListed: false, deny: [], ask: [],
  deploy: [...DEFAULT_DEPLOY_COMMANDS], protectedBranches: [...DEFAULT_PROTECTED_BRANCHES],
};

/** The attack file's policy: `deny: [rm, sudo]`. */
export const denyPolicy: CommandPolicy = { ...base, deny: ["rm", "sudo"] };

/** The attack file's other policy: `allow: [npm, git, docker, pytest]`. */
export const allowPolicy: CommandPolicy = { ...base, allow: ["npm", "git", "docker", "pytest"], allowListed: true };

export const locate: RuleLocator = (list, index) => {
  const first = { allow: 13, deny: 18, ask: 20, deploy: 30 }[list];
  return index < 0 ? (list === "allow" ? "runtime.yml:12" : undefined) : `runtime.yml:${first + index}`;
};

export const RM = "paddock: 'rm' denied by guardrails.commands.deny (runtime.yml:18)";
export const SUDO = "paddock: 'sudo' denied by guardrails.commands.deny (runtime.yml:19)";
export const notAllowed = (program: string): string => `paddock: '${program}' is not in guardrails.commands.allow (runtime.yml:12)`;
export const failsClosed = (reason: string, without: string): string =>
  `paddock: command denied: ${reason} (guardrails fail closed: write the command without ${without})`;
