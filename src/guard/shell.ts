// Finds every simple command a bash line can run, with the real bash grammar (tree-sitter-bash).
// The walk visits the whole tree, so commands inside pipelines, lists, subshells, groups,
// conditionals, loops, function bodies, substitutions and here-documents are all found. What it
// cannot see through it reports as a problem, and the caller fails closed on any problem.
import { createRequire } from "node:module";
import { Language, Parser } from "web-tree-sitter";
import type { Node, Tree } from "web-tree-sitter";
import { BUILTINS, RUNS_NOTHING } from "./builtins.ts";
import { unescapeDouble, wordOf } from "./words.ts";
import type { HintSource, ShellWord } from "./words.ts";

/** One simple command: its words in order (program first) and the text it reads on stdin, if visible. */
export interface SimpleCommand {
  words: ShellWord[];
  /** A here-document or here-string on this command; absent when stdin is not in the line. */
  stdin: ShellWord | undefined;
  /** It calls a function defined earlier at the top level of the line (see `findFunctions`). */
  functionCall: boolean;
}

/** Why a line cannot be checked, phrased for `paddock: command denied: <reason> (… without <without>)`. */
export interface Unprovable {
  reason: string;
  without: string;
  /** Command lines the construct may stand for, e.g. "rm 'x'" for `a=rm; $a x`; for messages only. */
  hints?: string[];
}

/** The result of scanning one line of shell. */
export interface ShellScan {
  commands: SimpleCommand[];
  problems: Unprovable[];
  /** The line sets PATH or a loader variable, so bare names may not mean the usual programs. */
  pathChanged: boolean;
  /** The line unsets something (a function, maybe), so function calls may start programs. */
  unsets: boolean;
}

/** A loaded bash grammar. Parsing is synchronous; call `close()` to free the WASM memory. */
export interface ShellParser {
  parse(text: string): Tree;
  close(): void;
}

/** Loads tree-sitter and the bash grammar once. Rejects when the grammar cannot be loaded. */
export async function createShellParser(): Promise<ShellParser> {
  await Parser.init();
  const language = await Language.load(createRequire(import.meta.url).resolve("tree-sitter-bash/tree-sitter-bash.wasm"));
  const parser = new Parser();
  parser.setLanguage(language);
  return {
    parse(text) {
      const tree = parser.parse(text);
      // parse() only returns null without a language or after a cancelled parse; neither happens here.
      if (tree === null) throw new Error("tree-sitter returned no tree");
      return tree;
    },
    close() {
      parser.delete();
    },
  };
}

// Assigning these makes bash run their value as commands later (PS4 under `set -x`, BASH_ENV in
// every non-interactive bash); the check cannot follow that, so it fails closed.
const EVALUATED_VARIABLES = /^(PS[0-4]|PROMPT_COMMAND|BASH_ENV|ENV)(\+?=|$)/;
// Assigning these changes which file a bare program name (or its libraries) resolves to.
const PATH_VARIABLES = /^(PATH|LD_PRELOAD|LD_LIBRARY_PATH|LD_AUDIT)(\+?=|$)/;
const NAMERS = new Set(["read", "printf", "mapfile", "readarray", "getopts", "unset"]);
const RESERVED = new Set(["{", "}", "then", "fi", "do", "done", "esac", "in", "elif", "else", "!", "]]", "))"]);

/** Scans `text` as bash. `positional` gives `$0 $1…` for hints when the text is an `sh -c` string. */
export function scanShell(parser: ShellParser, text: string, positional?: readonly string[]): ShellScan {
  const tree = parser.parse(text);
  try {
    const scan: ShellScan = { commands: [], problems: [], pathChanged: false, unsets: false };
    const root = tree.rootNode;
    const walker = new Walker(parser, scan, root, positional);
    walker.visit(root);
    return scan;
  } finally {
    tree.delete();
  }
}

class Walker {
  private readonly hints: HintSource;
  /** Functions surely defined before a point: name → end of the definition. */
  private readonly functions = new Map<string, number>();

  constructor(
    private readonly parser: ShellParser,
    private readonly scan: ShellScan,
    root: Node,
    positional: readonly string[] | undefined,
  ) {
    this.hints = { vars: assignedValues(root), positional };
    this.findFunctions(root);
  }

  visit(node: Node): void {
    if (node.isError || node.isMissing) return this.problem(syntaxError(node));
    switch (node.type) {
      case "command":
        // Substitutions in the words run first, then the command.
        for (const child of node.children) if (child !== null) this.visit(child);
        return this.command(node);
      case "command_substitution":
        if (/^`[^]*\\/.test(node.text)) return this.backquotes(node);
        break;
      case "heredoc_redirect":
        return this.heredoc(node);
      case "variable_assignment":
        this.assignment(node);
        break;
      case "variable_name":
        if (!["simple_expansion", "expansion", "unset_command", "variable_assignment"].includes(node.parent?.type ?? "")) this.name(node.text);
        if (node.parent?.type === "unset_command") this.scan.pathChanged ||= PATH_VARIABLES.test(node.text);
        break;
      case "unset_command":
        this.scan.unsets = true;
        break;
      case "expansion":
        // ${x@P} expands the value like a prompt, running any $(…) inside it.
        if (/@P\}$/.test(node.text)) this.problem({ reason: `${node.text} runs the variable's text as a prompt`, without: "the @P expansion" });
        break;
      case "word":
      case "raw_string":
      case "string":
      case "ansi_c_string":
      case "concatenation":
        if (node.parent?.type !== "concatenation") this.subscript(node);
        break;
      case "comment":
        return;
      default:
        break;
    }
    for (const child of node.children) if (child !== null) this.visit(child);
  }

  private problem(p: Unprovable): void {
    this.scan.problems.push(p);
  }

  private name(text: string): void {
    if (EVALUATED_VARIABLES.test(text)) {
      const name = text.replace(/\+?=.*$/s, "");
      this.problem({ reason: `setting ${name} makes the shell run its value as commands`, without: `setting ${name}` });
    }
    if (PATH_VARIABLES.test(text)) this.scan.pathChanged = true;
  }

  /**
   * `unset 'a[$(rm)]'`, `read`, `printf -v`, `[[ -v …]]` and arithmetic evaluate array subscripts,
   * running a `$(…)` inside even when it was quoted.
   */
  private subscript(node: Node): void {
    const w = wordOf(node, this.hints);
    if (w.kind === "literal" && /[A-Za-z_][A-Za-z0-9_]*\[[^\]]*(\$\(|`)/.test(w.text)) {
      this.problem({ reason: "quoted text holds a command substitution inside [ ], which bash runs when it reads it as an array subscript", without: "$( or ` inside [ ]" });
    }
  }

  private assignment(node: Node): void {
    const name = node.childForFieldName("name");
    if (name?.type === "variable_name") this.name(name.text);
    const value = node.childForFieldName("value");
    if (value === null) return;
    const w = wordOf(value, this.hints);
    // Text that holds $( or ` can be run later by arithmetic evaluation (`$((x))`), PS4 or eval.
    if (w.kind === "literal" && /\$\(|`/.test(w.text)) {
      const name = node.childForFieldName("name")?.text ?? "a variable";
      this.problem({ reason: `${name} is set to text containing a command substitution, which bash can run later`, without: "$( or ` inside a quoted assignment" });
    }
  }

  private command(node: Node): void {
    const nodes = commandWords(node);
    for (let i = 1; i < nodes.length; i++) {
      // Two words with no space between them are one word to bash: tree-sitter misread the line.
      if ((nodes[i - 1] as Node).endIndex === (nodes[i] as Node).startIndex) {
        return this.problem(syntaxError(nodes[i] as Node));
      }
    }
    const words = nodes.map((n) => wordOf(n, this.hints));
    const first = words[0];
    if (first === undefined) return;
    if (first.kind === "literal" && RESERVED.has(first.text)) return this.problem(syntaxError(nodes[0] as Node));
    // Arguments that set variables: NAME=VALUE (env, sudo …) and the NAME of read, printf -v ….
    const names = first.kind === "literal" && NAMERS.has(first.text);
    for (const w of words.slice(1)) if (w.kind === "literal" && (names || w.text.includes("="))) this.name(w.text);
    // `hash -p FILE name` makes `name` run FILE, like a PATH change for that one name.
    if (first.kind === "literal" && first.text === "hash" && words.some((w) => w.kind === "literal" && /^-[a-z]*p$/.test(w.text))) this.scan.pathChanged = true;
    // Builtin names are never function calls: in POSIX mode a special builtin wins over a function.
    const functionCall = first.kind === "literal" && !BUILTINS.has(first.text) && !RUNS_NOTHING.has(first.text) && (this.functions.get(first.text) ?? Infinity) < node.startIndex;
    this.scan.commands.push({ words, stdin: stdinOf(node, this.hints), functionCall });
  }

  /** A here-document is data when its delimiter is quoted; otherwise its substitutions run. */
  private heredoc(node: Node): void {
    for (const child of node.children) {
      if (child === null) continue;
      if (child.type !== "heredoc_body") this.visit(child);
      else if (!quotedHeredoc(node)) this.heredocBody(child);
    }
  }

  private heredocBody(body: Node): void {
    let raw = body.text;
    for (const child of body.namedChildren) {
      if (child === null || child.type === "heredoc_content") continue;
      this.visit(child);
      const from = child.startIndex - body.startIndex;
      raw = raw.slice(0, from) + " ".repeat(child.endIndex - child.startIndex) + raw.slice(from + child.endIndex - child.startIndex);
    }
    // tree-sitter leaves `…` (and, after <<- tabs, even $(…)) in here-documents unparsed.
    for (const piece of backquoted(raw)) {
      if (piece === null) return this.problem({ reason: "a here-document has a command substitution the checker cannot parse", without: "$(…) or `…` in the here-document" });
      this.merge(scanShell(this.parser, piece, this.hints.positional));
    }
  }

  /**
   * Inside `…` bash first drops the backslash of \\ \` \$ and then parses the text, so nested
   * `\`rm\`` runs rm; tree-sitter reads such text as plain words, so scan it again.
   */
  private backquotes(node: Node): void {
    // In double quotes \" loses its backslash too.
    const escaped = node.parent?.type === "string" ? /\\([\\`$"])/g : /\\([\\`$])/g;
    const inner = node.text.slice(1, -1).replace(escaped, "$1");
    this.merge(scanShell(this.parser, inner, this.hints.positional));
  }

  private merge(inner: ShellScan): void {
    this.scan.commands.push(...inner.commands);
    this.scan.problems.push(...inner.problems);
    this.scan.pathChanged ||= inner.pathChanged;
    this.scan.unsets ||= inner.unsets;
  }

  /**
   * A call to a function runs its body (checked where it is defined), not a program, when the
   * definition surely ran first: a top-level statement, not in the background, with a POSIX
   * name. The caller still matches such calls against deny, and lets them skip the allow list
   * only while nothing in the line unsets (ShellScan.unsets).
   */
  private findFunctions(root: Node): void {
    for (const child of root.namedChildren) {
      if (child?.type !== "function_definition") continue;
      const name = child.childForFieldName("name")?.text;
      if (name === undefined || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || child.nextSibling?.type === "&") continue;
      if (!this.functions.has(name)) this.functions.set(name, child.endIndex);
    }
  }
}

/** The word nodes bash sees for a command, in order, including words tree-sitter hung on redirects. */
function commandWords(cmd: Node): Node[] {
  const out: Node[] = [];
  for (let i = 0; i < cmd.childCount; i++) {
    const child = cmd.child(i) as Node;
    const field = cmd.fieldNameForChild(i);
    if (field === "name") out.push(child.namedChild(0) ?? child);
    else if (field === "argument") out.push(child);
    else if (field === "redirect") out.push(...redirectWords(child));
  }
  const parent = cmd.parent;
  if (parent?.type === "redirected_statement" && parent.childForFieldName("body")?.equals(cmd)) {
    for (const r of parent.childrenForFieldName("redirect")) if (r !== null) out.push(...redirectWords(r));
  }
  return out.sort((a, b) => a.startIndex - b.startIndex);
}

/**
 * Words after a redirect's target are arguments of the command (`rm >log x` runs `rm x`); tree-
 * sitter lists them as extra destinations or, after a here-document start, as arguments.
 */
function redirectWords(r: Node): Node[] {
  const out: Node[] = [];
  if (r.type === "file_redirect") {
    const dest = r.childrenForFieldName("destination").filter((d): d is Node => d !== null);
    const closes = r.children.some((c) => c !== null && (c.type === ">&-" || c.type === "<&-"));
    out.push(...dest.slice(closes ? 0 : 1));
  }
  for (let i = 0; i < r.childCount; i++) {
    const child = r.child(i) as Node;
    const field = r.fieldNameForChild(i);
    if (field === "argument") out.push(child);
    else if (field === "redirect") out.push(...redirectWords(child));
  }
  return out;
}

function quotedHeredoc(redirect: Node): boolean {
  const start = redirect.children.find((c) => c?.type === "heredoc_start");
  return start !== undefined && start !== null && /['"\\]/.test(start.text);
}

/**
 * The here-document or here-string a command reads, as the text its stdin will hold: its own, or
 * that of an enclosing group (`{ bash; } <<EOF`). A pipe or a `<` redirection in between means
 * stdin is not in the line.
 */
function stdinOf(cmd: Node, hints: HintSource): ShellWord | undefined {
  let from = cmd;
  const own = stdinRedirect(cmd.childrenForFieldName("redirect"), hints);
  if (own !== "none") return own;
  for (let n = cmd.parent; n !== null; from = n, n = n.parent) {
    if (["program", "command_substitution", "process_substitution"].includes(n.type)) return undefined;
    if (n.type === "pipeline" && !n.firstNamedChild?.equals(from)) return undefined;
    if (n.type !== "redirected_statement") continue;
    const found = stdinRedirect(n.childrenForFieldName("redirect"), hints);
    if (found !== "none") return found;
  }
  return undefined;
}

/** The last stdin redirection among `redirects`; undefined for one from a file, "none" if none. */
function stdinRedirect(redirects: (Node | null)[], hints: HintSource): ShellWord | undefined | "none" {
  let found: ShellWord | undefined | "none" = "none";
  for (const r of redirects) {
    if (r?.type === "herestring_redirect") {
      const w = r.namedChildren.find((c) => c !== null);
      const v = w === undefined || w === null ? undefined : wordOf(w, hints);
      found = v?.kind === "literal" ? { kind: "literal", text: `${v.text}\n` } : v;
    } else if (r?.type === "heredoc_redirect") {
      found = heredocText(r);
    } else if (r?.type === "file_redirect" && /^(<|<&|<>)$/.test(r.children.find((c) => c !== null && !c.isNamed)?.type ?? "") && r.childForFieldName("descriptor") === null) {
      found = undefined;
    }
  }
  return found;
}

function heredocText(r: Node): ShellWord {
  const body = r.children.find((c) => c?.type === "heredoc_body");
  const dash = r.children.some((c) => c?.type === "<<-");
  let text = body?.text ?? "";
  if (dash) text = text.replace(/^\t+/gm, "");
  if (quotedHeredoc(r)) return { kind: "literal", text };
  if ((body?.namedChildren ?? []).some((c) => c !== null && c.type !== "heredoc_content") || /\$|`/.test(text.replace(/\\[$`\\]/g, ""))) {
    return { kind: "dynamic", what: "a here-document with expansions", hints: [], source: text, split: false, prefix: "" };
  }
  return { kind: "literal", text: text.replace(/\\([$`\\\n])/g, (_m, c: string) => (c === "\n" ? "" : c)) };
}

/**
 * The code inside each unescaped `…` of here-document text; null when the text holds an
 * unescaped `$(` (left unparsed) or an unterminated backquote.
 */
function backquoted(raw: string): (string | null)[] {
  const out: (string | null)[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === "\\") {
      i++;
    } else if (c === "$" && raw[i + 1] === "(") {
      return [null];
    } else if (c === "`") {
      let j = i + 1;
      while (j < raw.length && raw[j] !== "`") j += raw[j] === "\\" ? 2 : 1;
      if (j >= raw.length) return [null];
      out.push(unescapeDouble(raw.slice(i + 1, j)));
      i = j;
    }
  }
  return out;
}

function syntaxError(node: Node): Unprovable {
  if (node.isMissing) return { reason: `the line is incomplete (a ${node.type} is missing)`, without: "the unfinished part" };
  const near = node.text.trim().slice(0, 30) || node.type;
  return { reason: `the line does not parse as a shell command (near \`${near}\`)`, without: "the syntax error" };
}

/** Every literal value given to each variable anywhere in the line (for message hints only). */
function assignedValues(root: Node): Map<string, string[]> {
  const vars = new Map<string, string[]>();
  const none: HintSource = { vars: new Map(), positional: undefined };
  for (const a of root.descendantsOfType("variable_assignment")) {
    const name = a?.childForFieldName("name");
    const value = a?.childForFieldName("value");
    if (name?.type !== "variable_name" || value === null || value === undefined) continue;
    const w = wordOf(value, none);
    if (w.kind === "literal") vars.set(name.text, [...(vars.get(name.text) ?? []), w.text]);
  }
  return vars;
}
