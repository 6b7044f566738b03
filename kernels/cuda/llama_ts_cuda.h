/*
 * llama.ts CUDA library: the C ABI called through Deno FFI (src/backends/cuda/ffi.ts holds the one
 * symbol table; a test checks it against this header).
 *
 * Conventions: every function returns LLAMA_TS_OK (0) or a negative LLAMA_TS_E_* status and never
 * exits; llama_ts_error_message() then describes the last failure. Device pointers travel as uint64.
 * A "program" is a decoder step compiled by the TypeScript backend into op records (see runtime.cu for
 * the record layout); running it takes the step's token ids, positions and block tables, replays a
 * captured CUDA graph for small steps, and copies the requested output rows back in the same call.
 */
#ifndef LLAMA_TS_CUDA_H
#define LLAMA_TS_CUDA_H
#include <stdint.h>

#define LLAMA_TS_CUDA_ABI_VERSION 5 /* 5: queued steps (llama_ts_program_queue / take) */

#define LLAMA_TS_OK 0
#define LLAMA_TS_E_CUDA (-1)        /* a CUDA runtime call failed */
#define LLAMA_TS_E_NO_DEVICE (-2)   /* no CUDA device / driver */
#define LLAMA_TS_E_OOM (-3)         /* device or pinned allocation failed */
#define LLAMA_TS_E_ARGUMENT (-4)    /* invalid argument or program record */
#define LLAMA_TS_E_UNSUPPORTED (-5) /* a format or shape the kernels do not support */

#ifdef __cplusplus
extern "C" {
#endif

int32_t llama_ts_abi_version(void);
/* Copy the last error's message (NUL-terminated, truncated to len). Returns its full length. */
int32_t llama_ts_error_message(char* buf, int32_t len);
/* Select a device and create the stream. info: [0..255] device name; mem: [total, free] bytes; sm: [major, minor, multiprocessors]. */
int32_t llama_ts_device_init(int32_t device, char* name, uint64_t* mem, int32_t* sm);
int32_t llama_ts_mem_alloc(uint64_t bytes, uint64_t* ptr);
int32_t llama_ts_mem_free(uint64_t ptr);
int32_t llama_ts_mem_info(uint64_t* mem);
int32_t llama_ts_mem_upload(uint64_t dst, const void* src, uint64_t bytes);
int32_t llama_ts_mem_download(void* dst, uint64_t src, uint64_t bytes);
int32_t llama_ts_synchronize(void);
/*
 * Prepare a weight on the device. args (int64): [op, src, m, k, srcFormat, dstQ, dstScales, group]
 * op 1: repack ggml q8_0 blocks -> int8 + f16 scales (group 32); op 2: repack ggml q4_0 -> int4 + scales;
 * op 3: quantize a float weight (srcFormat 0 f32, 1 f16, 2 bf16) to int8 per-channel (group = k);
 * op 4: quantize a float weight to int4 with `group` (128).
 */
int32_t llama_ts_weight_prepare(const int64_t* args);
/*
 * Compile a program. records: int64 words (variable-length records, see runtime.cu); config (int64):
 * [maxTokens, maxLogitRows, maxSeqs, maxBlocksPerSeq, outPtr, outRowBytes, workspaceBytes, attnScratchBytes].
 */
int32_t llama_ts_program_create(const int64_t* records, int32_t nWords, const int64_t* config, uint64_t* program);
/*
 * Run one step. step (int32): [nTokens, nLogitRows, nSeqs, sampling, tokens[nTokens], positions[nTokens],
 * seqIndex[nTokens], logitRows[nLogitRows], blockTables[nSeqs * maxBlocksPerSeq], then when sampling is 1
 * (programs with a SAMPLE record only) nLogitRows x 5 doubles (as 10 int32 each, little-endian):
 * temperature, topK, topP, minP, u]. When out is not null, nLogitRows * outRowBytes bytes of the output
 * tensor are copied to it before returning.
 */
int32_t llama_ts_program_run(uint64_t program, const int32_t* step, int32_t stepInts, void* out, uint64_t outBytes);
/*
 * Queued decoding (CompiledGraph.decodeGreedy), for programs whose output is the ids of an argmax or sample
 * record (4 bytes per logit row). program_queue puts a step on the stream and returns without waiting; the
 * step's ids are copied to host slot `slot` (0 .. LLAMA_TS_QUEUE_SLOTS - 1, free: taken back since it was
 * last queued). chained 1: the step's input tokens are the previous step's ids, row i taking logit row i
 * (the step's own token ids are ignored; the previous step on the stream must be this program's, and the
 * step has one logit row per row). program_take waits for the step queued on `slot` and copies its ids
 * (nLogitRows int32) to out. program_run refuses a program with steps not taken back.
 */
#define LLAMA_TS_QUEUE_SLOTS 4
int32_t llama_ts_program_queue(uint64_t program, const int32_t* step, int32_t stepInts, int32_t chained, int32_t slot);
int32_t llama_ts_program_take(uint64_t program, int32_t slot, void* out, uint64_t outBytes);
int32_t llama_ts_program_destroy(uint64_t program);

#ifdef __cplusplus
}
#endif
#endif
