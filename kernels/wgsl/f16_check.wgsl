// f16_check: the start-up self-check of shader-f16 (Deno/wgpu f16 paths have returned zeros): f16
// storage loads, f16 vector math, f16 <-> f32 conversions and f16 workgroup memory.
// out[i] = f32(a[i] * b[i] + a[i]) summed through workgroup memory, for 256 inputs of vec4<f16>; the
// host compares with values it computes exactly.
// Bindings: 0 a vec4<f16>; 1 b vec4<f16>; 2 out f32.
// Dispatch: (1) workgroup of 256.
// Precision: the inputs are small integers and halves, so every result is exact in f16.
enable f16;

@group(0) @binding(0) var<storage, read> a: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> sh: array<vec4<f16>, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  sh[li] = fma(a[li], b[li], a[li]);
  workgroupBarrier();
  let v = sh[255u - li];
  out[li] = f32(v.x) + f32(v.y) + f32(v.z) + f32(v.w);
}
