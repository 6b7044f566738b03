/**
 * The paged KV cache. Each layer holds `k` and `v` as `(nBlocks * blockSize, kvDim)` in one dtype (int8
 * caches add f32 scales per cache row and kv head, `(nBlocks * blockSize, nKvHeads)`); a
 * sequence owns a list of blocks (its block table), so sequences can grow, be freed, and share prefix
 * blocks without moving data. Storage dtype is a cache property: the graph does not change with it.
 * @module
 */
import type { Backend } from "../backend.ts";
import type { DType } from "../types.ts";
import type { KvLayer } from "../ops.ts";
import { kvDim, type LlamaConfig } from "./config.ts";
import { LlmError } from "../errors.ts";
import { byteLengthOf } from "../dtype.ts";

/** KV cache sizing. */
export interface KvCacheOptions {
  /** Total token slots over all sequences (rounded up to whole blocks). */
  readonly capacity: number;
  readonly blockSize?: number;
  readonly dtype?: DType;
}

/** Device storage plus a reference-counted block allocator. */
export class KvCache implements Disposable {
  readonly layers: readonly KvLayer[];
  readonly blockSize: number;
  readonly nBlocks: number;
  readonly dtype: DType;
  readonly byteLength: number;
  #backend: Backend;
  #free: number[];
  #refs: Uint32Array;

  constructor(backend: Backend, config: LlamaConfig, options: KvCacheOptions) {
    this.blockSize = options.blockSize ?? 16;
    this.dtype = options.dtype ?? backend.caps.defaultKvDType;
    if (!backend.caps.kvDTypes.includes(this.dtype)) {
      throw new LlmError(
        "UNSUPPORTED_DTYPE",
        `backend ${backend.name} has no ${this.dtype} KV cache; choose one of ${
          backend.caps.kvDTypes.join(", ")
        }`,
      );
    }
    this.nBlocks = Math.ceil(options.capacity / this.blockSize);
    const rows = this.nBlocks * this.blockSize;
    const kd = kvDim(config), quantized = this.dtype === "i8";
    const scaleBytes = quantized ? byteLengthOf("f32", rows * config.nKvHeads) : 0;
    this.byteLength = 2 * config.nLayers * (byteLengthOf(this.dtype, rows * kd) + scaleBytes);
    this.#backend = backend;
    const layers: KvLayer[] = [];
    for (let l = 0; l < config.nLayers; l++) {
      const scales = (name: string) => backend.alloc("f32", [rows, config.nKvHeads], "kv", `kv.${l}.${name}`);
      layers.push({
        k: backend.alloc(this.dtype, [rows, kd], "kv", `kv.${l}.k`),
        v: backend.alloc(this.dtype, [rows, kd], "kv", `kv.${l}.v`),
        ...(quantized ? { kScale: scales("k_scale"), vScale: scales("v_scale") } : {}),
        blockSize: this.blockSize,
      });
    }
    this.layers = layers;
    this.#free = Array.from({ length: this.nBlocks }, (_, i) => this.nBlocks - 1 - i);
    this.#refs = new Uint32Array(this.nBlocks);
  }

  /** Blocks not owned by any sequence. */
  get freeBlocks(): number {
    return this.#free.length;
  }

  /** Take `n` blocks; throws OUT_OF_MEMORY when fewer are free. */
  allocBlocks(n: number): number[] {
    if (n > this.#free.length) {
      throw new LlmError(
        "OUT_OF_MEMORY",
        `KV cache full: need ${n} more blocks of ${this.blockSize} tokens, ${this.#free.length} of ${this.nBlocks} free; ` +
          `raise the context size or run fewer sequences at once`,
      );
    }
    const out = this.#free.splice(this.#free.length - n, n).reverse();
    for (const b of out) this.#refs[b] = 1;
    return out;
  }

  /** Owners of a block (0 = free). */
  refCount(block: number): number {
    return this.#refs[block];
  }

  /** Share an owned block with another sequence (prefix reuse). */
  retain(block: number): void {
    if (this.#refs[block] === 0) throw new LlmError("INTERNAL", `retain of free KV block ${block}`);
    this.#refs[block]++;
  }

  /** Give blocks back; a block returns to the pool when its last owner releases it. */
  release(blocks: readonly number[]): void {
    for (const b of blocks) {
      if (this.#refs[b] === 0) throw new LlmError("INTERNAL", `double free of KV block ${b}`);
      if (--this.#refs[b] === 0) this.#free.push(b);
    }
  }

  [Symbol.dispose](): void {
    for (const l of this.layers) {
      for (const t of [l.k, l.v, l.kScale, l.vScale]) if (t) this.#backend.free(t);
    }
  }
}

/** One sequence's view of the cache: its blocks and how many tokens it holds. */
export class SequenceSlots {
  readonly blocks: number[] = [];
  length = 0;
  #cache: KvCache;

  constructor(cache: KvCache) {
    this.#cache = cache;
  }

  /** Make room for `total` tokens, taking blocks as needed. */
  reserve(total: number): void {
    const need = Math.ceil(total / this.#cache.blockSize) - this.blocks.length;
    if (need > 0) this.blocks.push(...this.#cache.allocBlocks(need));
  }

  /** Return every block. */
  release(): void {
    this.#cache.release(this.blocks);
    this.blocks.length = 0;
    this.length = 0;
  }
}
