// What the command check sees in a bash line: unquoting, every place a command can hide, the
// wrappers it follows, the constructs it refuses (fail closed), and lines it must not refuse.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { createCommandChecker } from "../../src/guard/commands.ts";
import type { CommandVerdict } from "../../src/guard/commands.ts";
import { decodeAnsiC } from "../../src/guard/words.ts";
import { RM, base, denyPolicy, failsClosed, locate } from "./fixtures.ts";

const checker = await createCommandChecker();
after(() => checker.close());

const outcome = (v: CommandVerdict): string => (v.verdict === "allow" ? "allow" : v.message);
const judge = (line: string): string => outcome(checker.check(line, denyPolicy, locate));
const names = (line: string): string[] | string => {
  const r = checker.programs(line);
  return "programs" in r ? r.programs.map((p) => p.program) : r.unprovable;
};

void describe("unquoting", () => {
  const cases: [string, string][] = [
    ["\\rm", "rm"], ["'r''m'", "rm"], ["r\\m", "rm"], ['"rm"', "rm"], ['r""m', "rm"], ["r''m", "rm"], ['"r"m', "rm"],
    ["$'\\x72\\x6d'", "rm"], ["$'\\162\\155'", "rm"], ["$'\\u0072m'", "rm"], ["$'r\\\\m'", "r\\m"], ["$'rm\\0x'", "rm"],
    ["rm\\\n", "rm"], ['"r\\m"', "r\\m"], ['"\\$x"', "$x"], ["~/bin/rm", "~/bin/rm"],
  ];
  for (const [written, program] of cases) {
    void it(`${JSON.stringify(written)} runs ${JSON.stringify(program)}`, () => assert.deepEqual(names(`${written} x`), [program]));
  }

  void it("decodes every ANSI-C escape bash knows", () => {
    assert.equal(decodeAnsiC("\\a\\b\\e\\E\\f\\n\\r\\t\\v\\\\\\'\\\"\\?"), "\x07\b\x1b\x1b\f\n\r\t\v\\'\"?");
    assert.equal(decodeAnsiC("\\x41\\101\\u00e9\\U0001F600\\cA\\q"), "AAé😀\x01\\q");
  });
});

void describe("every place a command can be", () => {
  const found: [string, string[]][] = [
    ["if rm; then rm; elif rm; then :; else rm; fi", ["rm", "rm", "rm", "rm"]],
    ["while rm; do rm; done; until rm; do :; done", ["rm", "rm", "rm"]],
    ["for i in $(rm); do rm; done", ["rm", "rm"]],
    ["select x in a; do rm; done", ["rm"]],
    ["case $(rm) in a) rm;; esac", ["rm", "rm"]],
    ["! rm", ["rm"]],
    ["ls |& rm", ["ls", "rm"]],
    ["f() { rm; }", ["rm"]],
    ["function f { rm; }", ["rm"]],
    ["f() ( rm )", ["rm"]],
    ["a=$(rm) b=`rm` ls", ["rm", "rm", "ls"]],
    ["ls $(rm)", ["rm", "ls"]],
    ["export a=$(rm)", ["rm"]],
    ["echo \"x${a:-$(rm)}\"", ["rm", "echo"]],
    ["echo $(( $(rm) + 1 ))", ["rm", "echo"]],
    ["(( $(rm) ))", ["rm"]],
    ["[[ -n $(rm) ]]", ["rm"]],
    ["diff <(rm a) >(rm b)", ["rm", "rm", "diff"]],
    ["cat < <(rm)", ["cat", "rm"]],
    ["ls > $(rm)", ["ls", "rm"]],
    ["cat <<< $(rm)", ["rm", "cat"]],
    ["cat <<EOF\n$(rm) `rm`\nEOF", ["cat", "rm", "rm"]],
    ["x[$(rm)]=1", ["rm"]],
    ["a=(1 $(rm))", ["rm"]],
    ["echo `echo \\`rm\\``", ["rm", "echo", "echo"]],
    ['echo "`\\"rm\\" x`"', ["rm", "echo"]],
  ];
  for (const [line, programs] of found) {
    void it(`finds ${programs.join(", ")} in ${JSON.stringify(line)}`, () => assert.deepEqual(names(line), programs));
  }

  void it("hears words written after a redirection as arguments", () => {
    assert.deepEqual(names("env >/dev/null rm x"), ["env", "rm"]);
    assert.deepEqual(names("env 2>&1 rm x"), ["env", "rm"]);
    assert.deepEqual(names(">log env rm"), ["env", "rm"]);
    assert.deepEqual(names("echo >&- rm"), ["echo"]);
    assert.deepEqual(names("exec >log rm x"), ["rm"]);
    assert.deepEqual(names("cat <<EOF rm\nx\nEOF"), ["cat"]);
  });
});

void describe("wrappers", () => {
  const found: [string, string[]][] = [
    ["env -u HOME -C /tmp A=1 B=2 rm", ["env", "rm"]],
    ["env -S 'A=1 rm x'", ["env", "rm"]],
    ["env - A=1 rm", ["env", "rm"]],
    ['env A="$x" B="${y}z" rm', ["env", "rm"]],
    ["env --split-string='-i rm'", ["env", "rm"]],
    ["nice -n 5 rm", ["nice", "rm"]],
    ["nice -10 rm", ["nice", "rm"]],
    ["ionice -c 3 -n7 rm", ["ionice", "rm"]],
    ["timeout -k 5 -s KILL 10s rm", ["timeout", "rm"]],
    ["timeout --preserve-status --signal=TERM 1m rm", ["timeout", "rm"]],
    ["setsid -w rm", ["setsid", "rm"]],
    ["stdbuf -oL -e 0 rm", ["stdbuf", "rm"]],
    ["chrt -f 10 rm", ["chrt", "rm"]],
    ["taskset -c 0-3 rm", ["taskset", "rm"]],
    ["flock -w 5 /tmp/l rm", ["flock", "rm"]],
    ["flock /tmp/l -c 'rm x'", ["flock", "rm"]],
    ["time -p rm", ["time", "rm"]],
    ["command -p rm", ["rm"]],
    ["builtin eval rm", ["rm"]],
    ["exec -a name rm", ["rm"]],
    ["sudo -u root -E A=1 rm", ["sudo", "rm"]],
    ["doas -u root rm", ["doas", "rm"]],
    ["su - root -c 'rm x'", ["su", "rm"]],
    ["runuser -u nobody -- rm", ["runuser", "rm"]],
    ["xargs -0 -I{} -n 1 rm {}", ["xargs", "rm"]],
    ["xargs -a list", ["xargs", "echo"]],
    ["find . -execdir rm {} + -ok rm {} \\;", ["find", "rm", "rm"]],
    ["busybox sh -c 'rm x'", ["busybox", "sh", "rm"]],
    ["watch -n 1 'ls; rm x'", ["watch", "ls", "rm"]],
    ["script -qc 'rm x' /dev/null", ["script", "rm"]],
    ["bash -xec 'rm x'", ["bash", "rm"]],
    ["bash -o pipefail -c 'rm x'", ["bash", "rm"]],
    ["bash --norc --noprofile -c 'rm x'", ["bash", "rm"]],
    ["bash <<EOF\nrm x\nEOF", ["bash", "rm"]],
    ["sh <<< 'rm x'", ["sh", "rm"]],
    ["{ cd /tmp; bash; } <<EOF\nrm x\nEOF", ["bash", "rm"]],
    ["{ echo ls | bash; } <<EOF\nrm x\nEOF", ["echo", "bash"]],
    ["{ bash < script; } <<EOF\nrm x\nEOF", ["bash"]],
    ["bash /dev/stdin <<< 'rm x'", ["bash", "rm"]],
    [". /dev/stdin <<'EOF'\nrm x\nEOF", ["rm"]],
    ["source ./env.sh", ["./env.sh"]],
    ["bash --rcfile ./rc -i", ["bash", "./rc"]],
    ["eval 'ls; rm x'", ["ls", "rm"]],
    ["trap 'rm x' EXIT", ["rm"]],
    ["alias ll='rm -rf'", ["rm"]],
    ["coproc rm", ["rm"]],
    ["hash -p /usr/bin/rm ls", ["/usr/bin/rm"]],
    ["command -v rm; type rm; which rm", ["which"]],
  ];
  for (const [line, programs] of found) {
    void it(`${JSON.stringify(line)} starts ${programs.join(", ")}`, () => assert.deepEqual(names(line), programs));
  }

  void it("passes the code string's arguments on as $0 $1 …, so a denied one is named", () => {
    assert.equal(judge("bash -c '\"$0\" x' rm"), RM);
    assert.equal(judge("sh -c 'exec \"$@\"' sh rm x"), RM);
  });
});

const SUBSCRIPT = "quoted text holds a command substitution inside [ ], which bash runs when it reads it as an array subscript";

void describe("constructs the check refuses (fail closed)", () => {
  const refused: [string, string, string][] = [
    ["$x y", "the program name comes from the variable $x", "the variable $x as the program name"],
    ["\"${x}\" y", "the program name comes from the variable $x", "the variable $x as the program name"],
    ["${x:-ls} y", "the program name comes from the expansion ${x:-ls}", "the expansion ${x:-ls} as the program name"],
    ["$(which ls) y", "the program name comes from a command substitution", "a command substitution as the program name"],
    ["r*m x", "the program name comes from a glob pattern", "a glob pattern as the program name"],
    ["/usr/bin/r[m] x", "the program name comes from a glob pattern", "a glob pattern as the program name"],
    ["rm{,} x", "the program name comes from a brace expansion", "a brace expansion as the program name"],
    ["$\"rm\" x", 'the program name comes from a locale-translated string $"…"', 'a locale-translated string $"…" as the program name'],
    ["eval \"$cmd\"", "eval runs a string that cannot be checked", "eval (run the command directly)"],
    ["bash -c \"$cmd\"", "bash -c runs code that comes from the variable $cmd", "the variable $cmd as the code of bash -c"],
    ["env $opts ls", "the arguments of env come from the variable $opts, so the program it starts is unknown", "the variable $opts in the env arguments"],
    ['su "$u" -c ls', "the arguments of su come from the variable $u, so the program it starts is unknown", "the variable $u in the su arguments"],
    ["env A=$x ls", "the arguments of env come from the variable $x, so the program it starts is unknown", "the variable $x in the env arguments"],
    ["timeout --frobnicate 5 ls", "timeout has an option the checker does not know (--frobnicate)", "the timeout option --frobnicate"],
    ["find $dir -name x", "the arguments of find come from the variable $dir, so the program it starts is unknown", "the variable $dir in the find arguments"],
    ["find . -exec {} \\;", "find -exec runs the files it finds", "{} as the program of find -exec"],
    ["source $f", "source runs a file named by the variable $f", "the variable $f as the file of source"],
    ["parallel rm ::: a", "parallel builds the commands it runs from its input", "parallel"],
    ["strace -f ls", "strace starts and alters programs in ways the checker cannot follow", "strace"],
    ["gdb -ex run ls", "gdb can start and alter programs in ways the checker cannot follow", "gdb"],
    ["fc -s", "fc runs commands again from the shell history", "fc"],
    ["PS4='$(id)' bash -x x.sh", "setting PS4 makes the shell run its value as commands", "setting PS4"],
    ["BASH_ENV=./x bash -c ls", "setting BASH_ENV makes the shell run its value as commands", "setting BASH_ENV"],
    ["x='a[$(id)]'; echo $((x))", "x is set to text containing a command substitution, which bash can run later", "$( or ` inside a quoted assignment"],
    ["echo ${x@P}", "${x@P} runs the variable's text as a prompt", "the @P expansion"],
    ["let 'x=$(id)'", "let evaluates text containing a command substitution", "$( or ` inside let"],
    ["unset 'a[$(id)]'", SUBSCRIPT, "$( or ` inside [ ]"],
    ["[[ -v 'a[`id`]' ]]", SUBSCRIPT, "$( or ` inside [ ]"],
    ["printf -v 'a[$(id)]' x", SUBSCRIPT, "$( or ` inside [ ]"],
    ["cat <<-EOF\n\t$(id)\n\tEOF", "a here-document has a command substitution the checker cannot parse", "$(…) or `…` in the here-document"],
    ["bash <<EOF\n$cmd\nEOF", "bash << runs code that comes from a here-document with expansions", "a here-document with expansions as the code of bash <<"],
    ["bash /dev/tcp/h/80", "bash reads commands from /dev/tcp/h/80", "bash /dev/tcp/h/80"],
    ["echo ((", "the line does not parse as a shell command (near `((`)", "the syntax error"],
    ["ls &&", "the line is incomplete (a word is missing)", "the unfinished part"],
    ["coproc w { ls; }", "the line does not parse as a shell command (near `}`)", "the syntax error"],
    ["coproc while :; do ls; done", "the line does not parse as a shell command (near `do`)", "the syntax error"],
    ["enable -f ./x.so x", "enable -f loads a builtin from a shared library", "enable -f"],
  ];
  for (const [line, reason, without] of refused) {
    void it(`refuses ${JSON.stringify(line)}`, () => assert.equal(judge(line), failsClosed(reason, without)));
  }

  void it("refuses nesting deeper than a person writes", () => {
    const deep = Array.from({ length: 14 }).reduce<string>((code) => `eval ${JSON.stringify(code)}`, "ls");
    assert.equal(judge(deep), failsClosed("commands are nested more than 12 levels deep", "so many nested shells and wrappers"));
  });

  void it("refuses a line nested deeper than the walk can follow, instead of crashing", () => {
    const line = `${"( ".repeat(20000)}ls${" )".repeat(20000)}`;
    assert.equal(judge(line), failsClosed("the line is nested too deeply to check", "so much nesting"));
    assert.equal(judge(`${"( ".repeat(500)}rm${" )".repeat(500)}`), RM);
  });

  void it("names a denied program the line suggests instead of the construct", () => {
    assert.equal(judge("a=rm; $a x"), RM);
    assert.equal(judge("a='rm -rf'; $a /"), RM);
    assert.equal(judge("$(echo rm) x"), RM);
    assert.equal(judge("a=ls; $a x"), failsClosed("the program name comes from the variable $a", "the variable $a as the program name"));
  });
});

void describe("lines that are not what they look like (no false positives)", () => {
  const fine = [
    "echo rm", "grep rm file", "ls -la", 'git commit -m "rm x"', "cat <<'EOF'\nrm x\nEOF", "cat <<\\EOF\n$(rm x)\nEOF",
    "echo 'rm x; sudo ls'", "printf 'sudo\\n'", "npm test -- --rm", "docker run --rm img", "find . -name rm", "command -v rm",
    "type sudo", "which rm", "man rm", "echo $HOME ~ *.ts", "for f in *.ts; do echo \"$f\"; done", "[ -f rm ] && echo yes",
    "echo '$(rm)' '`rm`'", "git log --grep='sudo'", "echo PS4 PATH", "unset PS4", "grep '[$(]' f", "sed 's/[`*]//g' f", 'find "$d" -name "$n"', "ls # rm x",
  ];
  for (const line of fine) void it(`allows ${JSON.stringify(line)}`, () => assert.equal(judge(line), "allow"));

  void it("does not treat -delete as running rm (find is reported)", () => {
    assert.deepEqual(names("find . -name '*.o' -delete"), ["find"]);
  });

  void it("a deny of a name does not match other names that contain it", () => {
    assert.equal(outcome(checker.check("rmdir x && term && farm", { ...base, deny: ["rm"] })), "allow");
  });
});
