/**
 * Prefix reuse for the paged KV cache: full blocks of earlier prompts, found again by their exact tokens.
 *
 * An entry is keyed by (the cached block before it, the block's own token ids). A block's keys and values
 * depend only on the tokens up to its end, and the block before it stands for all earlier tokens, so a key
 * match is an exact prefix match: no hashing, no collisions. The cache holds one reference on each cached
 * block (KvCache's reference counts), so a block lives while any sequence or the cache holds it; when blocks
 * run short, the least recently used entries that only the cache holds are evicted, leaves first (a parent
 * outlives its children, so a child's key never names a block that was reused for other tokens).
 * @module
 */
import type { KvCache } from "../model/kv_cache.ts";

interface Entry {
  readonly key: string;
  readonly block: number;
  readonly parent: number;
  children: number;
  lastUse: number;
}

/** Cached full prompt blocks, keyed by exact token prefix. */
export class PrefixCache {
  readonly #kv: KvCache;
  readonly #entries = new Map<string, Entry>();
  readonly #byBlock = new Map<number, Entry>();
  #tick = 0;
  /** Blocks served from the cache so far (each reused block counts once per sequence). */
  hits = 0;

  constructor(kv: KvCache) {
    this.#kv = kv;
  }

  /** Blocks the cache holds. */
  get size(): number {
    return this.#entries.size;
  }

  /** Cached blocks no sequence holds: they can be evicted when blocks run short. */
  get evictable(): number {
    let n = 0;
    for (const e of this.#entries.values()) if (this.#kv.refCount(e.block) === 1) n++;
    return n;
  }

  #key(parent: number, tokens: readonly number[]): string {
    return `${parent}:${tokens.join(",")}`;
  }

  /**
   * The cached blocks that hold `ids`' first full blocks, at most `maxBlocks` of them, in order. Each
   * returned block is retained for the caller, who releases it with the rest of its blocks.
   */
  match(ids: readonly number[], maxBlocks: number): number[] {
    const bs = this.#kv.blockSize, out: number[] = [];
    let parent = -1;
    for (let b = 0; b < maxBlocks && (b + 1) * bs <= ids.length; b++) {
      const e = this.#entries.get(this.#key(parent, ids.slice(b * bs, (b + 1) * bs)));
      if (!e) break;
      e.lastUse = ++this.#tick;
      this.#kv.retain(e.block);
      out.push(e.block);
      parent = e.block;
    }
    this.hits += out.length;
    return out;
  }

  /**
   * Offer a computed full block holding `tokens` after the cached block `parent` (-1 at the start).
   * Returns the block that now stands for this prefix: `block` itself when it was added (the cache
   * retains it), or the block already cached for the same tokens.
   */
  insert(parent: number, tokens: readonly number[], block: number): number {
    const key = this.#key(parent, tokens);
    const old = this.#entries.get(key);
    if (old) {
      old.lastUse = ++this.#tick;
      return old.block;
    }
    if (this.#byBlock.has(block)) return block; // already cached under its own key
    const e: Entry = { key, block, parent, children: 0, lastUse: ++this.#tick };
    this.#kv.retain(block);
    this.#entries.set(key, e);
    this.#byBlock.set(block, e);
    const p = this.#byBlock.get(parent);
    if (p) p.children++;
    return block;
  }

  /** Give back up to `n` blocks that only the cache holds, least recently used leaves first. */
  evict(n: number): number {
    let freed = 0;
    while (freed < n) {
      const leaves = [...this.#entries.values()]
        .filter((e) => e.children === 0 && this.#kv.refCount(e.block) === 1)
        .sort((a, b) => a.lastUse - b.lastUse);
      if (leaves.length === 0) break;
      for (const e of leaves) {
        if (freed >= n) break;
        this.#remove(e);
        freed++;
      }
    }
    return freed;
  }

  #remove(e: Entry): void {
    this.#entries.delete(e.key);
    this.#byBlock.delete(e.block);
    const p = this.#byBlock.get(e.parent);
    if (p) p.children--;
    this.#kv.release([e.block]);
  }

  /** Drop every entry no sequence holds (all of them when nothing runs). */
  clear(): void {
    this.evict(Infinity);
  }
}
