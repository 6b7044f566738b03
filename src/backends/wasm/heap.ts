/**
 * The wasm backend's memory: one WebAssembly.Memory (shared when threads run) holding weights, KV cache,
 * activations and programs, managed by a first-fit allocator with coalescing. wasm32 addresses 4 GiB at
 * most; allocations past that fail with OUT_OF_MEMORY naming the numbers.
 * @module
 */
import { LlmError } from "../../errors.ts";

const PAGE = 65536;
/** wasm32's ceiling: 65536 pages of 64 KiB. */
export const WASM_MAX_BYTES = 4 * 1024 ** 3;
const ALIGN = 64;

function gib(n: number): string {
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** A first-fit allocator over a WebAssembly.Memory, starting at the module's heap base. */
export class WasmHeap {
  readonly memory: WebAssembly.Memory;
  /** Free ranges, sorted by offset, coalesced. */
  #free: { off: number; size: number }[] = [];
  #sizes = new Map<number, number>();
  #top: number;
  #used = 0;
  #u8: Uint8Array;

  constructor(memory: WebAssembly.Memory, heapBase: number) {
    this.memory = memory;
    this.#top = Math.ceil(heapBase / ALIGN) * ALIGN;
    this.#u8 = new Uint8Array(memory.buffer);
  }

  /** Bytes currently allocated. */
  get used(): number {
    return this.#used;
  }

  /** Bytes of address space the allocator has touched (its high-water mark). */
  get top(): number {
    return this.#top;
  }

  /** The whole memory as bytes (refreshed after growth). */
  get u8(): Uint8Array {
    if (this.#u8.byteLength !== this.memory.buffer.byteLength) this.#u8 = new Uint8Array(this.memory.buffer);
    return this.#u8;
  }

  /** Allocate `bytes` (64-byte aligned); throws OUT_OF_MEMORY when wasm32's 4 GiB cannot hold them. */
  alloc(bytes: number, label: string): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const i = this.#free.findIndex((f) => f.size >= size);
    let off: number;
    if (i >= 0) {
      const f = this.#free[i];
      off = f.off;
      if (f.size === size) this.#free.splice(i, 1);
      else {
        f.off += size;
        f.size -= size;
      }
    } else {
      off = this.#top;
      const end = off + size;
      if (end > WASM_MAX_BYTES) {
        throw new LlmError(
          "OUT_OF_MEMORY",
          `wasm: ${label} needs ${size} bytes but ${
            gib(this.#used)
          } of wasm32's 4 GiB address space is in use ` +
            `(${gib(WASM_MAX_BYTES - this.#top)} left at the top); use a smaller or more quantized model ` +
            `(--weight-quant int4, q4_0), a shorter context, or another backend`,
        );
      }
      const have = this.memory.buffer.byteLength;
      if (end > have) {
        try {
          this.memory.grow(Math.ceil((end - have) / PAGE));
        } catch (e) {
          throw new LlmError(
            "OUT_OF_MEMORY",
            `wasm: growing memory to ${gib(end)} for ${label} failed (${(e as Error).message}); ` +
              `the host limits wasm memory: use a smaller model or context`,
            { cause: e },
          );
        }
      }
      this.#top = end;
    }
    this.#sizes.set(off, size);
    this.#used += size;
    return off;
  }

  /** Free an allocation (unknown offsets are ignored). */
  free(off: number): void {
    const size = this.#sizes.get(off);
    if (size === undefined) return;
    this.#sizes.delete(off);
    this.#used -= size;
    let i = this.#free.findIndex((f) => f.off > off);
    if (i < 0) i = this.#free.length;
    this.#free.splice(i, 0, { off, size });
    // coalesce with the next, then the previous range
    const cur = this.#free[i], next = this.#free[i + 1];
    if (next && cur.off + cur.size === next.off) {
      cur.size += next.size;
      this.#free.splice(i + 1, 1);
    }
    const prev = this.#free[i - 1];
    if (prev && prev.off + prev.size === cur.off) {
      prev.size += cur.size;
      this.#free.splice(i, 1);
    }
    // a free range at the top goes back to the bump pointer
    const last = this.#free[this.#free.length - 1];
    if (last && last.off + last.size === this.#top) {
      this.#top = last.off;
      this.#free.pop();
    }
  }
}
