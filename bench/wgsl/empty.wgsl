// empty (benchmark only): the cheapest dispatch that still writes a storage buffer, for the cost of
// a dispatch and its barrier inside one compute pass.
// Bindings: 0 sink u32.
// Dispatch: (1) workgroup of 64.
// Precision: n/a.

@group(0) @binding(0) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32) {
  if (li == 0u) { sink[0] = sink[0] + 1u; }
}
