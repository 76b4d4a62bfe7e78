// Shell words after quote removal: what bash would pass to execve for one word of a command, or
// why that cannot be known before the line runs. Everything here is pure string work on the
// tree-sitter-bash syntax tree; `shell.ts` decides which words matter.
import type { Node } from "web-tree-sitter";

/**
 * One word of a command line after quote removal.
 *
 * `literal` words are exactly one argument with a known value. `dynamic` words depend on the
 * running shell (expansions, substitutions, globs) and may even become zero or several arguments;
 * `what` names the construct for messages ("a command substitution") and `hints` lists values the
 * line itself suggests (`a=rm; $a` hints "rm"), used only to name a denied program in a message.
 */
export type ShellWord =
  | { kind: "literal"; text: string }
  | {
      kind: "dynamic";
      what: string;
      hints: string[];
      /** The word as written, for display. */
      source: string;
      /** It may become zero or several words (an unquoted expansion, a glob, "$@"). */
      split: boolean;
      /** The fixed text before the first part only known at run time (`A=` of `A="$x"`). */
      prefix: string;
    };

/** Values the line itself gives to variables and positional parameters, for hints only. */
export interface HintSource {
  /** Every literal value assigned to each variable anywhere in the line. */
  vars: ReadonlyMap<string, readonly string[]>;
  /** `$0`, `$1`, … when the line is the code string of `sh -c STRING ARG0 ARG1…`. */
  positional: readonly string[] | undefined;
}

/** Builds one word: `text` is the value, `pattern` marks unquoted characters (quoted ones are \0). */
interface Builder {
  text: string;
  pattern: string;
  dynamic: string | undefined;
  split: boolean;
  prefix: string;
}

/** A word from its argv form (exec API arrays): always literal. */
export function literal(text: string): ShellWord {
  return { kind: "literal", text };
}

/** The word a syntax node stands for. */
export function wordOf(node: Node, src: HintSource): ShellWord {
  const b: Builder = { text: "", pattern: "", dynamic: undefined, split: false, prefix: "" };
  add(node, b);
  const source = node.text;
  if (b.dynamic !== undefined) return { kind: "dynamic", what: b.dynamic, hints: hintsOf(node, src), source, split: b.split, prefix: b.prefix };
  // Unquoted glob and brace characters make the word a pattern that may match several files.
  if (/[*?]/.test(b.pattern) || /\[[^\]]*\]/.test(b.pattern)) return { kind: "dynamic", what: "a glob pattern", hints: [], source, split: true, prefix: "" };
  if (/\{[^}]*(,|\.\.)[^}]*\}/.test(b.pattern)) return { kind: "dynamic", what: "a brace expansion", hints: [], source, split: true, prefix: "" };
  return { kind: "literal", text: cutAtNul(b.text) };
}

function add(node: Node, b: Builder): void {
  switch (node.type) {
    case "word":
    case "number":
      return addUnquoted(node.text, b);
    case "raw_string":
      return addQuoted(node.text.slice(1, -1), b);
    case "ansi_c_string":
      return addQuoted(decodeAnsiC(node.text.slice(2, -1)), b);
    case "string":
      return addDoubleQuoted(node, b);
    case "concatenation":
      return addChildren(node, b, addGap);
    default:
      if (!node.isNamed) return addUnquoted(node.text, b);
      dynamic(b, describe(node));
      b.split = true;
  }
}

function dynamic(b: Builder, what: string): void {
  if (b.dynamic !== undefined) return;
  b.dynamic = what;
  b.prefix = b.text;
}

/** Children in order; `gap` handles text between them that no child covers. */
function addChildren(node: Node, b: Builder, gap: (text: string, b: Builder) => void): void {
  let at = node.startIndex;
  const src = node.text;
  for (const child of node.children) {
    if (child === null) continue;
    if (child.startIndex > at) gap(src.slice(at - node.startIndex, child.startIndex - node.startIndex), b);
    add(child, b);
    at = child.endIndex;
  }
  if (node.endIndex > at) gap(src.slice(at - node.startIndex), b);
}

function addGap(text: string, b: Builder): void {
  addUnquoted(text, b);
}

function addDoubleQuoted(node: Node, b: Builder): void {
  let at = node.startIndex + 1;
  const end = node.endIndex - 1;
  const slice = (from: number, to: number): string => node.text.slice(from - node.startIndex, to - node.startIndex);
  for (const child of node.namedChildren) {
    if (child === null) continue;
    if (child.startIndex > at) addQuoted(unescapeDouble(slice(at, child.startIndex)), b);
    if (child.type === "string_content") {
      addQuoted(unescapeDouble(child.text), b);
    } else {
      dynamic(b, describe(child));
      // "$@" and "${a[@]}" become one word per element even inside double quotes.
      if (/@/.test(child.text)) b.split = true;
    }
    at = child.endIndex;
  }
  if (end > at) addQuoted(unescapeDouble(slice(at, end)), b);
}

/** Unquoted text: a backslash quotes the next character; backslash-newline disappears. */
function addUnquoted(text: string, b: Builder): void {
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === "\\" && i + 1 < text.length) {
      const n = text[++i] as string;
      if (n !== "\n") addQuoted(n, b);
    } else {
      b.text += c;
      b.pattern += c;
    }
  }
}

function addQuoted(text: string, b: Builder): void {
  b.text += text;
  b.pattern += "\0".repeat(text.length);
}

/** Inside double quotes a backslash only quotes $ ` " \ and newline. */
export function unescapeDouble(text: string): string {
  return text.replace(/\\([$`"\\\n])/g, (_m, c: string) => (c === "\n" ? "" : c));
}

/** execve stops at the first NUL, and so does bash's $'…' decoding. */
function cutAtNul(text: string): string {
  const i = text.indexOf("\0");
  return i < 0 ? text : text.slice(0, i);
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: "\x07", b: "\b", e: "\x1b", E: "\x1b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v",
  "\\": "\\", "'": "'", '"': '"', "?": "?",
};

/** Decodes the body of an ANSI-C string `$'…'` the way bash does. */
export function decodeAnsiC(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c !== "\\" || i + 1 >= s.length) {
      out += c;
      continue;
    }
    const n = s[i + 1] as string;
    const rest = s.slice(i + 2);
    const simple = SIMPLE_ESCAPES[n];
    let m: RegExpExecArray | null;
    if (simple !== undefined) {
      out += simple;
      i += 1;
    } else if (/[0-7]/.test(n)) {
      const oct = /^[0-7]{1,3}/.exec(s.slice(i + 1))?.[0] ?? n;
      out += String.fromCharCode(parseInt(oct, 8) & 0xff);
      i += oct.length;
    } else if ((m = hexAfter(n, rest)) !== null) {
      out += String.fromCodePoint(parseInt(m[0], 16));
      i += 1 + m[0].length;
    } else if (n === "c" && rest.length > 0) {
      out += String.fromCharCode(rest.charCodeAt(0) & 0x1f);
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

function hexAfter(n: string, rest: string): RegExpExecArray | null {
  const digits = n === "x" ? 2 : n === "u" ? 4 : n === "U" ? 8 : 0;
  if (digits === 0) return null;
  const m = new RegExp(`^[0-9a-fA-F]{1,${digits}}`).exec(rest);
  if (m === null || parseInt(m[0], 16) > 0x10ffff) return null;
  return m;
}

/** A noun phrase for a construct whose value is only known when the line runs. */
export function describe(node: Node): string {
  switch (node.type) {
    case "simple_expansion":
    case "expansion": {
      const name = variableName(node);
      return name === undefined ? `the expansion ${node.text}` : `the variable $${name}`;
    }
    case "command_substitution":
      return "a command substitution";
    case "arithmetic_expansion":
      return "an arithmetic expansion";
    case "process_substitution":
      return "a process substitution";
    case "translated_string":
      return 'a locale-translated string $"…"';
    default:
      return `the construct ${node.text.slice(0, 40)}`;
  }
}

/** `a` for `$a`, `${a}`, `"$a"`; undefined when the expansion does more than read a variable. */
function variableName(node: Node): string | undefined {
  const named = node.namedChildren.filter((c): c is Node => c !== null);
  if (named.length !== 1) return undefined;
  const only = named[0] as Node;
  if (only.type !== "variable_name" && only.type !== "special_variable_name") return undefined;
  if (node.children.some((c) => c !== null && !c.isNamed && !["$", "${", "}"].includes(c.type))) return undefined;
  return only.text;
}

/** Values the line suggests for a word that is one expansion (possibly in double quotes). */
function hintsOf(node: Node, src: HintSource): string[] {
  let n = node;
  if (n.type === "string" && n.namedChildCount === 1) n = n.namedChild(0) as Node;
  if (n.type === "command_substitution") return echoed(n, src);
  if (n.type !== "simple_expansion" && n.type !== "expansion") return [];
  const name = variableName(n);
  if (name === undefined) return [];
  const pos = src.positional;
  if (/^[0-9]$/.test(name)) return pos?.[Number(name)] !== undefined ? [pos[Number(name)] as string] : [];
  if (name === "@" || name === "*") return pos !== undefined && pos.length > 1 ? [pos.slice(1).join(" ")] : [];
  return [...(src.vars.get(name) ?? [])];
}

/** What `$(echo words…)` prints, when it is that simple. */
function echoed(sub: Node, src: HintSource): string[] {
  const cmds = sub.namedChildren.filter((c): c is Node => c !== null);
  if (cmds.length !== 1 || cmds[0]?.type !== "command") return [];
  const words = cmds[0].namedChildren.filter((c): c is Node => c !== null && c.type !== "variable_assignment");
  const values = words.map((w) => wordOf(w.type === "command_name" ? (w.namedChild(0) as Node) : w, src));
  if (values.some((v) => v.kind !== "literal")) return [];
  const texts = values.map((v) => (v.kind === "literal" ? v.text : ""));
  if (texts[0] !== "echo" && texts[0] !== "printf") return [];
  const args = texts.slice(1).filter((t) => !/^-[neE]+$/.test(t));
  return args.length > 0 ? [args.join(" ")] : [];
}
