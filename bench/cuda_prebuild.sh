#!/usr/bin/env bash
# Here, before a device call: build the CUDA library, build/gemm_check and build/ops_check for sm_90 with this machine's
# nvcc (the same 13.0 as the GPU machine's) and pack them into .deno/prebuilt.tar.xz (~5 MB, carried with
# .deno), stamped with a hash of kernels/cuda. On the device, `use_prebuilt` (bench/_device_common.sh)
# unpacks them only if the stamp still matches the sources there, which saves the 1-3 minutes of device
# time a build takes; any mismatch falls back to building there.
set -eu
cd "$(git rev-parse --show-toplevel)"
deno run -A tools/build_cuda.ts --arch sm_90 --checks >/tmp/prebuild.log 2>&1 || { tail -30 /tmp/prebuild.log; exit 1; }
source bench/_cuda_stamp.sh
cuda_stamp >build/PREBUILT_STAMP
# the library and two check programs only (PREBUILT_CHECKS, default gemm_check ops_check): the carried tree
# must stay under 64 MiB (.deno is ~53 MB without this)
checks=${PREBUILT_CHECKS:-gemm_check ops_check}
tar cJf .deno/prebuilt.tar.xz build/libllama_ts_cuda.so $(for c in $checks; do echo "build/$c"; done) build/PREBUILT_STAMP
ls -la .deno/prebuilt.tar.xz
