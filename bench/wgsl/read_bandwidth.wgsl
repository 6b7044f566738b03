// read_bandwidth (benchmark only, not an op): every thread reads UNROLL 16-byte words per step of a
// grid-stride loop over a buffer and folds them into one value, written once so the reads cannot be
// removed. bench/webgpu_bandwidth.ts times it with timestamp queries.
// Bindings: 0 src vec4<u32> (n words); 1 sink u32 (one per thread); 2 uniform (n, stride).
// Dispatch: (groups) workgroups of WG; stride = groups * WG * UNROLL words.
// Precision: n/a (integer xor).

override WG: u32 = 256u;
override UNROLL: u32 = 4u;

struct Params {
  n: u32,
  stride: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let tid = gid.x + gid.y * nwg.x * WG;
  var acc = vec4<u32>(0u);
  // consecutive threads read consecutive words; a thread's UNROLL words are WG apart
  let block = (tid / WG) * WG * UNROLL + tid % WG;
  for (var base = block; base < p.n; base += p.stride) {
    for (var u = 0u; u < UNROLL; u++) {
      let i = base + u * WG;
      if (i < p.n) { acc ^= src[i]; }
    }
  }
  let v = acc.x ^ acc.y ^ acc.z ^ acc.w;
  if (v == 0x12345678u) { sink[tid] = v; }
}
