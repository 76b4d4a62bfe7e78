// Every line of shared/attacks/commands.md against `deny: [rm, sudo]` and, separately, against
// `allow: [npm, git, docker, pytest]`; then the semantics of allow, deny and ask, argv input and
// the decision order. Lines the submission check cannot see into (an interpreter's code, a
// script an allowed program runs) are pinned to what it does say: the in-sandbox guard stops them.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { createCommandChecker } from "../../src/guard/commands.ts";
import type { CommandPolicy, CommandVerdict } from "../../src/guard/commands.ts";
import { RM, SUDO, allowPolicy, base, denyPolicy, failsClosed, locate, notAllowed } from "./fixtures.ts";

const checker = await createCommandChecker();
after(() => checker.close());

const outcome = (v: CommandVerdict): string => (v.verdict === "allow" ? "allow" : v.message);
const judge = (line: string | string[], policy: CommandPolicy): string => outcome(checker.check(line, policy, locate));
const IN_SANDBOX = "allow"; // not visible at submission; the kernel exec guard applies the deny list

// [line, with deny: [rm, sudo], with allow: [npm, git, docker, pytest]]
const ATTACKS: [string, string, string][] = [
  ["rm x", RM, notAllowed("rm")],
  ["/bin/rm x", "paddock: '/bin/rm' denied by guardrails.commands.deny (runtime.yml:18)", notAllowed("/bin/rm")],
  ["/usr/bin/rm x", "paddock: '/usr/bin/rm' denied by guardrails.commands.deny (runtime.yml:18)", notAllowed("/usr/bin/rm")],
  ["\\rm x", RM, notAllowed("rm")],
  ["'r''m' x", RM, notAllowed("rm")],
  ["r\\m x", RM, notAllowed("rm")],
  ['"rm" x', RM, notAllowed("rm")],
  ["command rm x", RM, notAllowed("rm")],
  ["env rm x", RM, notAllowed("rm")],
  ["env -i rm x", RM, notAllowed("rm")],
  ["nice rm x", RM, notAllowed("rm")],
  ["timeout 5 rm x", RM, notAllowed("rm")],
  ["nohup rm x", RM, notAllowed("rm")],
  ["setsid rm x", RM, notAllowed("rm")],
  ["stdbuf -o0 rm x", RM, notAllowed("rm")],
  ["ls; rm x", RM, notAllowed("rm")],
  ["ls && rm x", RM, notAllowed("rm")],
  ["false || rm x", RM, notAllowed("rm")],
  ["ls | rm x", RM, notAllowed("rm")],
  ["ls\nrm x", RM, notAllowed("rm")],
  ["(rm x)", RM, notAllowed("rm")],
  ["{ rm x; }", RM, notAllowed("rm")],
  ["ls & rm x", RM, notAllowed("rm")],
  ['bash -c "rm x"', RM, notAllowed("rm")],
  ["sh -c 'rm x'", RM, notAllowed("rm")],
  ["eval rm x", RM, notAllowed("rm")],
  ["$(echo rm) x", RM, failsClosed("the program name comes from a command substitution", "a command substitution as the program name")],
  ["`echo rm` x", RM, failsClosed("the program name comes from a command substitution", "a command substitution as the program name")],
  ["a=rm; $a x", RM, failsClosed("the program name comes from the variable $a", "the variable $a as the program name")],
  ["$'\\x72\\x6d' x", RM, notAllowed("rm")],
  ["xargs rm < list", RM, notAllowed("rm")],
  ["find . -name x -exec rm {} \\;", RM, notAllowed("rm")],
  ["find . -exec sh -c 'rm x' \\;", RM, notAllowed("rm")],
  ["ln -s /bin/rm /tmp/d; /tmp/d x", "paddock: '/bin/rm' denied by guardrails.commands.deny (runtime.yml:18)", notAllowed("ln")],
  ["cp /bin/rm /tmp/d; /tmp/d x", "paddock: '/bin/rm' denied by guardrails.commands.deny (runtime.yml:18)", notAllowed("cp")],
  ["busybox rm x", RM, notAllowed("busybox")],
  // Code strings are not analysed, but one that names a denied program is refused (fail closed).
  [`python3 -c 'import subprocess; subprocess.run(["rm","x"])'`, RM, notAllowed("python3")],
  [`node -e 'require("child_process").execSync("rm x")'`, RM, notAllowed("node")],
  [`perl -e 'system("rm x")'`, RM, notAllowed("perl")],
  ["npm run clean", IN_SANDBOX, IN_SANDBOX],
  ["make clean", IN_SANDBOX, notAllowed("make")],
  ["sudo ls", SUDO, notAllowed("sudo")],
  ["su -c ls", IN_SANDBOX, notAllowed("su")],
];

void describe("shared/attacks/commands.md with deny: [rm, sudo]", () => {
  for (const [line, expected] of ATTACKS) {
    void it(`${JSON.stringify(line)} → ${expected === IN_SANDBOX ? "left to the in-sandbox guard" : "denied"}`, () => assert.equal(judge(line, denyPolicy), expected));
  }
});

void describe("shared/attacks/commands.md with allow: [npm, git, docker, pytest]", () => {
  for (const [line, , expected] of ATTACKS) {
    void it(`${JSON.stringify(line)} → ${expected === "allow" ? "allowed (npm is listed)" : "denied"}`, () => assert.equal(judge(line, allowPolicy), expected));
  }
});

void describe("interpreter code strings", () => {
  void it("are refused when they name a denied program as a word or at the end of a path, and left alone otherwise", () => {
    assert.equal(judge(`python3 -c 'import os; os.system("/bin/rm x")'`, denyPolicy), RM);
    assert.equal(judge(`node --eval 'require("child_process").spawnSync("rm",["x"])'`, denyPolicy), RM);
    assert.equal(judge(`python3 -c 'print("firm")'`, denyPolicy), "allow");
    assert.equal(judge(`python3 -c 'open("rm.txt")'`, denyPolicy), "allow");
    assert.equal(judge(`python3 script.py rm`, denyPolicy), "allow", "a script's arguments are data; the script is caught in the sandbox");
  });
});

void describe("what the check reports", () => {
  void it("names every program, the wrappers it runs through, and the rule with its location", () => {
    const v = checker.check("sudo env A=1 bash -c 'xargs rm'", { ...base, deny: ["rm"] }, locate);
    assert.deepEqual(v, {
      verdict: "deny",
      programs: [
        { program: "sudo", argv: ["sudo", "env", "A=1", "bash", "-c", "xargs rm"], via: [] },
        { program: "env", argv: ["env", "A=1", "bash", "-c", "xargs rm"], via: ["sudo"] },
        { program: "bash", argv: ["bash", "-c", "xargs rm"], via: ["sudo", "env"] },
        { program: "xargs", argv: ["xargs", "rm"], via: ["sudo", "env", "bash -c"] },
        { program: "rm", argv: ["rm"], via: ["sudo", "env", "bash -c", "xargs"] },
      ],
      program: "rm",
      rule: { list: "deny", index: 0, entry: "rm", at: "runtime.yml:18" },
      message: RM,
    });
  });

  void it("leaves the location out when the locator does not know it", () => {
    assert.equal(outcome(checker.check("rm x", denyPolicy)), "paddock: 'rm' denied by guardrails.commands.deny");
    assert.equal(outcome(checker.check("curl x", allowPolicy)), "paddock: 'curl' is not in guardrails.commands.allow");
  });

  void it("denies the first denied program, wrappers included", () => {
    assert.equal(judge("ls && sudo rm x", denyPolicy), SUDO);
    assert.equal(judge("ls && rm x && sudo ls", denyPolicy), RM);
  });

  void it("denies an empty command", () => {
    for (const line of ["", "   \n", "# only a comment"]) assert.equal(judge(line, denyPolicy), "paddock: command denied: the command is empty");
    assert.equal(judge([], denyPolicy), "paddock: command denied: the command is empty");
  });

  void it("programs() gives the analysis alone", () => {
    assert.deepEqual(checker.programs("ls | grep x"), { programs: [{ program: "ls", argv: ["ls"], via: [] }, { program: "grep", argv: ["grep", "x"], via: [] }] });
    assert.deepEqual(checker.programs("$x y"), { unprovable: "the program name comes from the variable $x" });
    assert.deepEqual(checker.programs("cd /tmp && a=1"), { programs: [] });
  });
});

void describe("allow semantics", () => {
  const listed = (allow: string[]): CommandPolicy => ({ ...base, allow, allowListed: true });

  void it("without an allow: key anything not denied runs", () => {
    assert.equal(judge("curl -s https://example.com | jq .", base), "allow");
  });

  void it("an empty allow: list still lets the basic read-only tools run", () => {
    for (const line of ["ls -la", "cat a | grep x | sort | uniq | wc -l", "find . -name '*.ts'", "[ -f x ] && echo yes", "test -d x", "stat x"]) {
      assert.equal(judge(line, listed([])), "allow", line);
    }
    assert.equal(judge("curl x", listed([])), notAllowed("curl"));
  });

  void it("basic tools that write or start programs need an entry", () => {
    assert.equal(judge("find . -delete", listed([])), notAllowed("find"));
    assert.equal(judge("find . -fprint out", listed([])), notAllowed("find"));
    assert.equal(judge("sort -o out in", listed([])), notAllowed("sort"));
    assert.equal(judge("env", listed([])), notAllowed("env"));
    assert.equal(judge("less x", listed([])), notAllowed("less"));
  });

  void it("find -exec, xargs and sort --compress-program count the program they run", () => {
    assert.equal(judge("find . -exec npm test \\;", listed(["npm"])), "allow");
    assert.equal(judge("find . -exec curl x \\;", listed(["npm"])), notAllowed("curl"));
    assert.equal(judge("ls | xargs npm", listed(["npm"])), "allow");
    assert.equal(judge("ls | xargs curl", listed(["npm"])), notAllowed("curl"));
    assert.equal(judge("ls | xargs", listed([])), "allow"); // runs echo
    assert.equal(judge("sort --compress-program=gzip x", listed([])), notAllowed("gzip"));
  });

  void it("wrappers need no entry when what they start is allowed; sudo, su and busybox do", () => {
    for (const line of ["timeout 5 npm test", "env CI=1 npm test", "nice -n 5 npm test", "bash -c 'npm test'", "sh -c 'npm test && ls'", "nohup npm start"]) {
      assert.equal(judge(line, listed(["npm"])), "allow", line);
    }
    assert.equal(judge("sudo npm test", listed(["npm"])), notAllowed("sudo"));
    assert.equal(judge("busybox ls", listed(["ls"])), notAllowed("busybox"));
    assert.equal(judge("bash script.sh", listed(["npm"])), notAllowed("bash"));
  });

});

void describe("allow semantics: names and paths", () => {
  const listed = (allow: string[]): CommandPolicy => ({ ...base, allow, allowListed: true });

  void it("a name matches that program from PATH or a system directory, not a file elsewhere", () => {
    assert.equal(judge("/usr/bin/npm test", listed(["npm"])), "allow");
    assert.equal(judge("/bin/npm test", listed(["npm"])), "allow");
    assert.equal(judge("./npm test", listed(["npm"])), notAllowed("./npm"));
    assert.equal(judge("/tmp/npm test", listed(["npm"])), notAllowed("/tmp/npm"));
  });

  void it("a path matches that path and the bare name that resolves there", () => {
    assert.equal(judge("/opt/tools/bin/lint x", listed(["/opt/tools/bin/lint"])), "allow");
    assert.equal(judge("/opt/tools/bin/../bin/lint x", listed(["/opt/tools/bin/lint"])), "allow");
    assert.equal(judge("lint x", listed(["/opt/tools/bin/lint"])), notAllowed("lint"));
    assert.equal(judge("npm x", listed(["/usr/bin/npm"])), "allow");
  });

  void it("a line that changes PATH or LD_PRELOAD cannot be checked against an allow list", () => {
    const expected = failsClosed(
      "the line changes PATH or a loader variable, so program names cannot be checked against guardrails.commands.allow",
      "changing PATH or LD_PRELOAD (name the program by its full path instead)",
    );
    for (const line of ["PATH=/tmp:$PATH npm test", "export PATH=/tmp; npm test", "env LD_PRELOAD=/tmp/x.so npm test", "hash -p /tmp/x npm; npm"]) {
      assert.equal(judge(line, listed(["npm", "/tmp/x"])), expected, line);
    }
    assert.equal(judge("PATH=/tmp:$PATH npm test", base), "allow");
  });

  void it("a function defined earlier in the line runs its body, which is checked", () => {
    assert.equal(judge("t() { npm test; }; t", listed(["npm"])), "allow");
    assert.equal(judge("t() { curl x; }; t", listed(["npm"])), notAllowed("curl"));
    assert.equal(judge("t; t() { npm test; }", listed(["npm"])), notAllowed("t"));
    assert.equal(judge("t() { npm test; } & t", listed(["npm"])), notAllowed("t"));
    assert.equal(judge("t() { npm test; }; unset -f t; t", listed(["npm"])), notAllowed("t"));
    assert.equal(judge("t() { npm test; }; eval 'builtin uns''et -f t'; t", listed(["npm"])), notAllowed("t"));
    assert.equal(judge("t() { npm test; }; . ./npm-env.sh; t", listed(["npm", "./npm-env.sh"])), notAllowed("t"));
    assert.equal(judge("t-1() { npm test; }; t-1", listed(["npm"])), notAllowed("t-1"));
  });

  void it("shell builtins that run nothing are not programs", () => {
    assert.equal(judge("cd /src && export CI=1 && set -e && read -r x < f && npm test", listed(["npm"])), "allow");
  });
});

void describe("deny semantics", () => {
  const deny = (d: string[]): CommandPolicy => ({ ...base, deny: d });
  const denied = (program: string): string => `paddock: '${program}' denied by guardrails.commands.deny (runtime.yml:18)`;

  void it("a name matches that name at any path", () => {
    for (const p of ["rm", "/usr/bin/rm", "/bin/rm", "./rm", "../x/rm", "~/bin/rm", "/tmp/rm"]) assert.equal(judge(`${p} x`, deny(["rm"])), denied(p));
  });

  void it("a path matches that path, the name that resolves there, and a relative path of that name", () => {
    for (const p of ["rm", "/usr/bin/rm", "/bin/rm", "/usr/bin/../bin/rm", "./rm"]) assert.equal(judge(`${p} x`, deny(["/usr/bin/rm"])), denied(p));
    assert.equal(judge("/tmp/rm x", deny(["/usr/bin/rm"])), "allow");
    assert.equal(judge("rm x", deny(["/opt/rm"])), "allow");
  });

  void it("deny wins over allow and ask", () => {
    assert.equal(judge("npm test && rm -rf dist", { ...allowPolicy, deny: ["rm"], ask: ["npm"] }), denied("rm"));
  });

  void it("a function named like a denied program is still denied by name", () => {
    assert.equal(judge("rm() { echo no; }; rm x", deny(["rm"])), denied("rm"));
    assert.equal(judge("exec() { :; }; exec rm x", deny(["rm"])), denied("rm"));
  });

  void it("copying or linking a denied program out of a system directory counts as running it", () => {
    assert.equal(judge("install -m 755 /usr/bin/sudo ./s", deny(["sudo"])), denied("/usr/bin/sudo"));
    assert.equal(judge("cp ./build/rm.txt /tmp", deny(["rm"])), "allow");
  });
});

void describe("ask semantics", () => {
  const policy: CommandPolicy = { ...base, ask: ["terraform", "kubectl"] };

  void it("asks for the first program that needs approval, with the rule's location", () => {
    const v = checker.check("terraform plan && kubectl get pods", policy, locate);
    assert.deepEqual(v, {
      verdict: "ask", programs: v.programs, program: "terraform", deploying: false,
      rule: { list: "ask", index: 0, entry: "terraform", at: "runtime.yml:20" },
      message: "paddock: 'terraform' needs approval (guardrails.commands.ask, runtime.yml:20)",
    });
    assert.equal(outcome(checker.check("kubectl get pods", policy)), "paddock: 'kubectl' needs approval (guardrails.commands.ask)");
  });

  void it("asks through wrappers and reports whether the line deploys", () => {
    const v = checker.check("timeout 600 terraform apply -auto-approve", policy, locate);
    assert.equal(v.verdict, "ask");
    assert.equal(v.verdict === "ask" && v.deploying, true);
  });

  void it("the allow list is checked before ask", () => {
    assert.equal(judge("terraform plan", { ...policy, allowListed: true, allow: ["npm"] }), notAllowed("terraform"));
  });
});

void describe("argv arrays", () => {
  void it("argv[0] is the program; nothing is shell-parsed", () => {
    assert.deepEqual(checker.programs(["ls", "$(rm x)", "; rm y"]), { programs: [{ program: "ls", argv: ["ls", "$(rm x)", "; rm y"], via: [] }] });
    assert.equal(judge(["rm x"], allowPolicy), notAllowed("rm x"));
    assert.equal(judge(["echo", "`rm`"], denyPolicy), "allow");
  });

  void it("wrappers are still unwrapped", () => {
    assert.equal(judge(["bash", "-c", "rm x"], denyPolicy), RM);
    assert.equal(judge(["env", "rm", "x"], denyPolicy), RM);
    assert.equal(judge(["/usr/bin/timeout", "5", "sudo", "ls"], denyPolicy), SUDO);
    assert.equal(judge(["sh", "-c", '"$0" x', "rm"], denyPolicy), RM);
  });

  void it("refuses NUL bytes", () => {
    assert.equal(judge(["rm\0x"], denyPolicy), failsClosed("the command holds a NUL byte", "NUL bytes"));
    assert.equal(judge("ls\0; rm x", denyPolicy), failsClosed("the command holds a NUL byte", "NUL bytes"));
  });
});

void describe("speed", () => {
  void it("checks a typical line in well under a millisecond", () => {
    const lines = ["npm test", "git status && ls -la | grep foo", "cd app && CI=1 npm run build -- --watch 2>&1 | tee log", "bash -c 'git push origin feature/x'"];
    for (let i = 0; i < 200; i++) for (const l of lines) checker.check(l, allowPolicy);
    const n = 2000;
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) checker.check(lines[i % lines.length] as string, allowPolicy);
    const msPerCheck = Number(process.hrtime.bigint() - start) / 1e6 / n;
    assert.ok(msPerCheck < 1, `${msPerCheck.toFixed(3)} ms per check`);
  });
});
