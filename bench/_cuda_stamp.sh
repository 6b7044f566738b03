# A hash of everything the CUDA build reads (sourced by bench/cuda_prebuild.sh and _device_common.sh). The
# file order is fixed by LC_ALL=C: a locale that collates punctuation differently (ops_check_cache.cu before
# ops_check.cu) would otherwise give the same sources another stamp on the device and a needless rebuild.
cuda_stamp() {
  (
    LC_ALL=C
    cat kernels/cuda/*.cu kernels/cuda/*.cuh kernels/cuda/*.h kernels/cuda/checks/* tools/build_cuda.ts
  ) | sha256sum | cut -c1-16
}
