/*
 * llama.ts wasm kernels: shared definitions. Built four ways from the same sources (tools/build_wasm.ts):
 * with or without threads (-matomics, shared memory) and with or without relaxed SIMD. Every kernel
 * reads its arguments from one program record (OpRec) written by src/backends/wasm/program.ts; the two
 * files must agree on the argument indices below.
 *
 * Threads: every thread runs the whole program (llama_ts_run) and takes its slice of each op; a barrier
 * separates ops. Slices never change an output's arithmetic, so results do not depend on the thread count.
 */
#pragma once
#include <stdint.h>
#include <stddef.h>
#include <wasm_simd128.h>

#define API __attribute__((visibility("default")))
#define INLINE static inline __attribute__((always_inline))

/* Per-step inputs (StepParams), written by the host before each run. */
typedef struct {
  int32_t n_tokens, n_logits, max_blocks, pad;
  const int32_t *tokens, *positions, *seq_index, *block_tables, *logit_rows;
} Step;

/*
 * One op of the program: opcode (bit 8 set: wait at a barrier first), row kind (0 = step tokens,
 * 1 = logit rows), then arguments. The compiler (program.ts) sets the barrier bit only where an op reads
 * or overwrites data another thread produced or still reads since the last barrier. Ops split work one of
 * four ways, and producer/consumer pairs split the same way need no barrier:
 *   rows  - step rows (rope, kv_write)
 *   cols  - output columns, slice(width, 4), the same for every row (matmul, add, silu_mul)
 *   heads - (row, head) pairs (attention)
 *   dup   - every thread computes the whole op (embed, rms_norm, gather_rows: tiny in decode)
 */
#define REC_WORDS 24
typedef struct {
  int32_t op, rows;
  uint32_t a[REC_WORDS - 2];
} OpRec;

enum { OP_END = 0, OP_EMBED, OP_RMS_NORM, OP_MATMUL, OP_ROPE, OP_KV_WRITE, OP_ATTENTION, OP_ADD, OP_SILU_MUL, OP_GATHER, OP_ARGMAX };

/*
 * Weight formats (src/backends/wasm/layout.ts WF). 2-D weights are interleaved in groups of 4 rows
 * (prep.c), so a tile of 4 rows is one linear stream. f32/f16/bf16: per group, chunks of 4 elements of
 * each of the 4 rows (16 values; k padded to a multiple of 4 with zeros). q8 and q4: per group and
 * 32-block, Q8_BLOCK bytes = f32 scale[4], int8 q[4][32]; Q4_BLOCK bytes = f32 scale[4], u8
 * nibbles[4][4][4] (vector c, row r, byte e: element 4c + e low, element 16 + 4c + e high; value nibble - 8).
 */
enum { WF_F32 = 0, WF_F16 = 1, WF_BF16 = 2, WF_Q8 = 3, WF_Q4 = 4 };
#define Q8_BLOCK 144
#define Q4_BLOCK 80
/* KV cache formats. */
enum { KV_F32 = 0, KV_F16 = 1, KV_I8 = 2 };

/* Thread context of one run. */
typedef struct {
  const Step* step;
  volatile int32_t* sync; /* [0] arrivals, [1] generation, [2] abort */
  int32_t tid, nth, can_wait;
} Ctx;

void barrier(Ctx* c);

/* Split n items over the threads: this thread's [lo, hi). `align` keeps slices multiples of it. */
INLINE void slice(const Ctx* c, int32_t n, int32_t align, int32_t* lo, int32_t* hi) {
  int32_t units = (n + align - 1) / align;
  int32_t per = units / c->nth, rem = units % c->nth;
  int32_t u0 = c->tid * per + (c->tid < rem ? c->tid : rem);
  int32_t u1 = u0 + per + (c->tid < rem ? 1 : 0);
  *lo = u0 * align < n ? u0 * align : n;
  *hi = u1 * align < n ? u1 * align : n;
}

INLINE int32_t live_rows(const OpRec* o, const Step* s) { return o->rows ? s->n_logits : s->n_tokens; }

INLINE float f32_of(uint32_t bits) {
  union { uint32_t u; float f; } v = {bits};
  return v.f;
}
INLINE uint32_t bits_of(float f) {
  union { float f; uint32_t u; } v = {f};
  return v.u;
}

/* IEEE half to float, exact (subnormals included). */
INLINE float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7fff;
  if (em >= 0x7c00) return f32_of(sign | 0x7f800000 | (em & 0x3ff) << 13);
  return f32_of(sign | bits_of(f32_of(em << 13) * 0x1p112f));
}

/* Four halves (in the low 64 bits of h, as u16 lanes widened to u32) to floats; inf/NaN not handled. */
INLINE v128_t half4_to_float(v128_t h32) {
  v128_t sign = wasm_i32x4_shl(wasm_v128_and(h32, wasm_i32x4_splat(0x8000)), 16);
  v128_t em = wasm_i32x4_shl(wasm_v128_and(h32, wasm_i32x4_splat(0x7fff)), 13);
  return wasm_v128_or(wasm_f32x4_mul(em, wasm_f32x4_splat(0x1p112f)), sign);
}

/* Float to IEEE half, round to nearest even (matches src/dtype.ts f32ToF16). */
uint16_t float_to_half(float f);

/* Fused multiply-add where relaxed SIMD has it; a*b + c. */
INLINE v128_t madd(v128_t a, v128_t b, v128_t c) {
#ifdef __wasm_relaxed_simd__
  return wasm_f32x4_relaxed_madd(a, b, c);
#else
  return wasm_f32x4_add(wasm_f32x4_mul(a, b), c);
#endif
}

/*
 * Pair sums of 16 signed bytes `a` times 16 bytes `b` in 0..127, as eight i16 lanes (lane i: a[2i] b[2i] +
 * a[2i+1] b[2i+1]); exact while pair sums fit i16 (so for 4-bit b: one instruction, no widening).
 */
INLINE v128_t dot16_i8_u7(v128_t a, v128_t b) {
#ifdef __wasm_relaxed_simd__
  return __builtin_wasm_relaxed_dot_i8x16_i7x16_s_i16x8(a, b);
#else
  v128_t lo = wasm_i16x8_extmul_low_i8x16(a, b), hi = wasm_i16x8_extmul_high_i8x16(a, b);
  return wasm_i16x8_add(wasm_i16x8_shuffle(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14),
                        wasm_i16x8_shuffle(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15));
#endif
}

/* The four i32 row sums of a, b, c, d (each four lanes) as one vector: [sum(a), sum(b), sum(c), sum(d)]. */
INLINE v128_t reduce4(v128_t a, v128_t b, v128_t c, v128_t d) {
  v128_t t0 = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
  v128_t t1 = wasm_i32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), wasm_i32x4_shuffle(c, d, 2, 6, 3, 7));
  return wasm_i32x4_add(wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5), wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
}

/* reduce4 for f32 lanes: [sum(a), sum(b), sum(c), sum(d)]. */
INLINE v128_t reduce4f(v128_t a, v128_t b, v128_t c, v128_t d) {
  v128_t t0 = wasm_f32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
  v128_t t1 = wasm_f32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), wasm_i32x4_shuffle(c, d, 2, 6, 3, 7));
  return wasm_f32x4_add(wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5), wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7));
}

INLINE float hsum(v128_t v) {
  v128_t s = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
  s = wasm_f32x4_add(s, wasm_i32x4_shuffle(s, s, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(s, 0);
}

/* e^x for four lanes, ~2 ulp over the float range (underflows to 0, overflows to inf). */
v128_t exp4(v128_t x);
float expf_(float x);

/* Physical cache row of position `pos` of sequence `seq`. */
INLINE int32_t cache_row(const Step* s, int32_t seq, int32_t pos, int32_t block_size) {
  return s->block_tables[seq * s->max_blocks + pos / block_size] * block_size + pos % block_size;
}

/* Op entry points (one file each). */
void op_embed(Ctx* c, const OpRec* o);
void op_rms_norm(Ctx* c, const OpRec* o);
void op_matmul(Ctx* c, const OpRec* o);
void op_rope(Ctx* c, const OpRec* o);
void op_kv_write(Ctx* c, const OpRec* o);
void op_attention(Ctx* c, const OpRec* o);
void op_add(Ctx* c, const OpRec* o);
void op_silu_mul(Ctx* c, const OpRec* o);
void op_gather(Ctx* c, const OpRec* o);
void op_argmax(Ctx* c, const OpRec* o);
