// GEMV block trace, a diagnostic build only (see below); included by gemv.cuh and gemv_check.
#pragma once
#include <cstdint>

namespace llama_ts {

#if LLAMA_TS_GEMV_TRACE
// Diagnostic build only (-DLLAMA_TS_GEMV_TRACE=capacity): every GEMV block records its SM and four stamps of
// that SM's clock (entry, after griddepcontrol.wait, after staging x, exit) plus the global timer at entry and
// exit, in start order. gemv_check --trace reads them back (gemv_trace_take) to show where a layer's time goes.
struct GemvTraceRec {
  unsigned long long clk[4];
  unsigned long long gt0, gt3;
  unsigned smid, k, pairs, pad;
};
// Copies up to cap records out and resets the log; returns how many there were.
int gemv_trace_take(GemvTraceRec* out, int cap);
#endif

}  // namespace llama_ts
