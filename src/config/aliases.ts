/**
 * Anchors, aliases and nesting in one pass. The YAML library finds an alias's anchor by scanning
 * the whole document for every alias, which made a file of 8,000 aliases take seconds; here every
 * alias is resolved while walking the document once, the size and depth of what expanding it would
 * give are measured before anything is expanded (as is the depth of what is written), and the
 * document is then rewritten without aliases for `toJS`.
 */
import { Scalar, isAlias, isMap, isPair, isScalar, isSeq } from "yaml";
import type { Alias, Node } from "yaml";
import { MAX_ALIAS_NODES, MAX_DEPTH, TOO_DEEP } from "./limits.ts";
import { quote } from "./words.ts";

export type Segment = string | number;

/** What each alias stands for: the last node before it with its anchor (YAML's rule), or undefined. */
export type AliasTargets = Map<Alias, Node | undefined>;

/** Names a mapping key the way the data will: scalars by value, aliases by their target, the rest as written. */
export type KeyNamer = (key: unknown) => string;

export interface AliasProblem {
  /** Where: the alias, or the collection nested too deep. */
  node: Node;
  path: Segment[];
  message: string;
}

/** Size (nodes) and depth (nested collections) of a value with its aliases expanded. */
interface Cost {
  size: number;
  depth: number;
}

const LEAF: Cost = { size: 1, depth: 0 };

class Resolver {
  readonly targets: AliasTargets = new Map();
  problem: AliasProblem | undefined;
  private readonly anchors = new Map<string, Node>();
  /** Costs of anchored nodes that are complete; an anchored node missing here is still being walked. */
  private readonly done = new Map<Node, Cost>();
  private expanded = 0;

  constructor(private readonly source: string) {}

  keyName: KeyNamer = (key) => {
    if (key === null || key === undefined) return "";
    if (isScalar(key)) return String(key.value);
    if (isAlias(key)) {
      const target = this.targets.get(key);
      return target === undefined ? `*${key.source}` : this.keyName(target);
    }
    const range = (key as Node).range;
    return range ? this.source.slice(range[0], range[1]).trimEnd() : "";
  };

  /** Walks `node` in document order (the order YAML resolves anchors in); `depth` counts the collections around it. */
  visit(node: unknown, path: Segment[], depth: number): Cost {
    if (node === null || typeof node !== "object") return LEAF;
    if (isAlias(node)) return this.alias(node, path, depth);
    const anchor = (node as Node).anchor;
    if (anchor !== undefined) this.anchors.set(anchor, node as Node);
    let cost = LEAF;
    if (isMap(node) || isSeq(node)) {
      // The parser has already refused anything much deeper, so this recursion stays shallow.
      if (depth >= MAX_DEPTH) this.report(node, path, TOO_DEEP);
      let size = 1;
      let inner = 0;
      (node.items as unknown[]).forEach((item, i) => {
        const parts = isPair(item) ? this.pair(item, path, depth + 1) : [this.visit(item, [...path, i], depth + 1)];
        for (const c of parts) {
          size += c.size;
          inner = Math.max(inner, c.depth);
        }
      });
      cost = { size, depth: inner + 1 };
    }
    if (anchor !== undefined) this.done.set(node as Node, cost);
    return cost;
  }

  private pair(pair: { key: unknown; value: unknown }, path: Segment[], depth: number): Cost[] {
    const key = this.visit(pair.key, path, depth);
    return [key, this.visit(pair.value, [...path, this.keyName(pair.key)], depth)];
  }

  private alias(alias: Alias, path: Segment[], depth: number): Cost {
    const target = this.anchors.get(alias.source);
    this.targets.set(alias, target);
    if (target === undefined) return LEAF; // reported by the walker, with a hint to quote it
    const name = quote(`*${alias.source}`);
    const cost = this.done.get(target);
    if (cost === undefined) {
      this.report(alias, path, `${name} is inside the value it refers to, so it would repeat forever: refer to a value that ends before the alias`);
      return LEAF;
    }
    this.expanded += cost.size;
    if (this.expanded > MAX_ALIAS_NODES) {
      this.report(alias, path, `too many alias expansions (limit ${MAX_ALIAS_NODES}): the aliases up to ${name} repeat more than ${MAX_ALIAS_NODES} values; write the values out instead`);
    } else if (depth + cost.depth > MAX_DEPTH) {
      this.report(alias, path, `${name} nests mappings and lists more than ${MAX_DEPTH} levels deep`);
    }
    return cost;
  }

  /** Keeps the first problem; the walk goes on so that every alias still gets its target. */
  private report(node: Node, path: Segment[], message: string): void {
    this.problem ??= { node, path, message };
  }
}

/**
 * Resolves every alias under `root` in one walk and checks what expanding them would cost: more
 * than MAX_ALIAS_NODES values added, nesting beyond MAX_DEPTH, or an alias inside its own anchor
 * is a problem (the first one found is returned).
 */
export function resolveAliases(root: unknown, source: string): { targets: AliasTargets; keyName: KeyNamer; problem: AliasProblem | undefined } {
  const r = new Resolver(source);
  r.visit(root, [], 0);
  return { targets: r.targets, keyName: r.keyName, problem: r.problem };
}

/**
 * Rewrites the document without aliases: each alias becomes the node it stands for (shared, not
 * copied; `toJS` converts it at every place), an undefined one the text it was written as, and
 * every key that is not a plain scalar becomes a string key named by `keyName`, as the walker
 * named it. Call only when `resolveAliases` found no problem: that bounds what `toJS` then builds.
 */
export function replaceAliases(node: unknown, targets: AliasTargets, keyName: KeyNamer): void {
  const swap = (v: unknown): unknown => {
    if (!isAlias(v)) {
      replaceAliases(v, targets, keyName);
      return v;
    }
    return targets.get(v) ?? new Scalar(`*${v.source}`);
  };
  if (!isMap(node) && !isSeq(node)) return;
  const items = node.items as unknown[];
  items.forEach((item, i) => {
    if (!isPair(item)) {
      items[i] = swap(item);
      return;
    }
    if (!isScalar(item.key)) {
      const name = keyName(item.key);
      swap(item.key); // an anchor inside the key may be the target of an alias elsewhere
      item.key = new Scalar(name);
    }
    item.value = swap(item.value);
  });
}
