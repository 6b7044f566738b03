// lib/fused_gemv.wgsl: the workgroup layout the GEMV kernels share (matmul_gemv, matmul_gemv_f16,
// matmul_gemv_q). Not an op. One dispatch covers up to three matrices over the same x (QKV; gate/up):
// its first wgA workgroups take matrix A, the next wgB matrix B, the rest matrix C.

struct FusedBlock {
  mat: u32, // 0, 1, 2: A, B, C
  blk: u32, // workgroup index within that matrix
  m: u32, // that matrix's rows
}

fn fusedBlock(wg: u32, wgA: u32, wgB: u32, mA: u32, mB: u32, mC: u32) -> FusedBlock {
  if (wg < wgA) { return FusedBlock(0u, wg, mA); }
  if (wg - wgA < wgB) { return FusedBlock(1u, wg - wgA, mB); }
  return FusedBlock(2u, wg - wgA - wgB, mC);
}

// silu(gate) for the gate/up dispatches
fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
}
