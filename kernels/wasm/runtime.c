/*
 * The program runtime: llama_ts_run walks a compiled program (OpRec records ending in OP_END), one op
 * after another with a barrier between ops, on every thread. Also the shared math helpers and the
 * memcpy/memset the compiler may call (there is no libc).
 */
#include "llama_ts_wasm.h"

void* memcpy(void* dst, const void* src, size_t n) {
  uint8_t* d = dst;
  const uint8_t* s = src;
  while (n--) *d++ = *s++;
  return dst;
}

void* memset(void* dst, int v, size_t n) {
  uint8_t* d = dst;
  while (n--) *d++ = (uint8_t)v;
  return dst;
}

/* Spins before sleeping: long enough to catch a partner finishing its slice, short enough not to burn a
 * core that another thread (or process) needs. */
#define SPIN 2000

/*
 * Generation barrier over shared words ([0] arrivals, [1] generation, [2] abort). The last thread to arrive resets the count and bumps
 * the generation; the others spin briefly, then sleep (memory.atomic.wait32) where the thread may block.
 */
void barrier(Ctx* c) {
#ifdef __wasm_atomics__
  if (c->nth == 1) return;
  int32_t* sync = (int32_t*)c->sync;
  int32_t gen = __atomic_load_n(&sync[1], __ATOMIC_ACQUIRE);
  if (__atomic_fetch_add(&sync[0], 1, __ATOMIC_ACQ_REL) == c->nth - 1) {
    __atomic_store_n(&sync[0], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sync[1], gen + 1, __ATOMIC_RELEASE);
    __builtin_wasm_memory_atomic_notify(&sync[1], 0xffffffffu);
    return;
  }
  /* sync[2] is the abort flag: a thread that trapped (or the host) sets it so nobody waits forever */
  for (int spin = 0; spin < SPIN; spin++) {
    if (__atomic_load_n(&sync[1], __ATOMIC_ACQUIRE) != gen || __atomic_load_n(&sync[2], __ATOMIC_RELAXED)) return;
  }
  while (__atomic_load_n(&sync[1], __ATOMIC_ACQUIRE) == gen && !__atomic_load_n(&sync[2], __ATOMIC_RELAXED)) {
    if (c->can_wait) __builtin_wasm_memory_atomic_wait32(&sync[1], gen, 1000000);
  }
#else
  (void)c;
#endif
}

uint16_t float_to_half(float f) {
  uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000, exp = (u >> 23) & 0xff, mant = u & 0x7fffff;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
  int32_t e = (int32_t)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000;
    uint32_t shift = (uint32_t)(14 - e), half = mant >> shift, rem = mant & ((1u << shift) - 1),
             mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return (uint16_t)(sign | half);
}

/* e^x = 2^n * e^r, r = x - n ln2 in [-ln2/2, ln2/2]; degree-6 polynomial for e^r. */
v128_t exp4(v128_t x) {
  x = wasm_f32x4_max(wasm_f32x4_min(x, wasm_f32x4_splat(88.7f)), wasm_f32x4_splat(-104.0f));
  v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.0f / 720);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 120));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 24));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 6));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0.5f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  /* 2^n in two factors so n down to -150 (subnormal results) stays representable */
  v128_t ni = wasm_i32x4_trunc_sat_f32x4(n);
  v128_t n1 = wasm_i32x4_shr(ni, 1), n2 = wasm_i32x4_sub(ni, n1);
  v128_t s1 = wasm_i32x4_shl(wasm_i32x4_add(n1, wasm_i32x4_splat(127)), 23);
  v128_t s2 = wasm_i32x4_shl(wasm_i32x4_add(n2, wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(wasm_f32x4_mul(p, s1), s2);
}

float expf_(float x) { return wasm_f32x4_extract_lane(exp4(wasm_f32x4_splat(x)), 0); }

/* Run a program for one step on thread `tid` of `nth`. Returns 0. */
API int32_t llama_ts_run(const OpRec* prog, const Step* step, int32_t* sync, int32_t tid, int32_t nth,
                         int32_t can_wait) {
  Ctx c = {step, sync, tid, nth, can_wait};
  for (const OpRec* o = prog; o->op != OP_END; o++) {
    if (o->op & 0x100) barrier(&c);
    switch (o->op & 0xff) {
      case OP_EMBED: op_embed(&c, o); break;
      case OP_RMS_NORM: op_rms_norm(&c, o); break;
      case OP_MATMUL: op_matmul(&c, o); break;
      case OP_ROPE: op_rope(&c, o); break;
      case OP_KV_WRITE: op_kv_write(&c, o); break;
      case OP_ATTENTION: op_attention(&c, o); break;
      case OP_ADD: op_add(&c, o); break;
      case OP_SILU_MUL: op_silu_mul(&c, o); break;
      case OP_GATHER: op_gather(&c, o); break;
      case OP_ARGMAX: op_argmax(&c, o); break;
      default: return -1;
    }
  }
  barrier(&c); /* every thread is done before the host reads results */
  return 0;
}
