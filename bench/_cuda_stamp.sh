# A hash of everything the CUDA build reads (sourced by bench/cuda_prebuild.sh and _device_common.sh).
cuda_stamp() { cat kernels/cuda/*.cu kernels/cuda/*.cuh kernels/cuda/*.h kernels/cuda/checks/* tools/build_cuda.ts | sha256sum | cut -c1-16; }
