// lib/bytes.wgsl: reading a staging buffer of raw file bytes at any byte offset. Not an op.
// `src` must be declared by the including kernel as array<u32>.

fn byteAt(i: u32) -> u32 {
  return (src[i >> 2u] >> ((i & 3u) * 8u)) & 255u;
}

fn u16At(i: u32) -> u32 {
  return byteAt(i) | (byteAt(i + 1u) << 8u);
}

fn u32At(i: u32) -> u32 {
  if ((i & 3u) == 0u) { return src[i >> 2u]; }
  return u16At(i) | (u16At(i + 2u) << 16u);
}

// element e of a float source row-major tensor: SRC 0 f32, 1 f16, 2 bf16
fn floatAt(fmt: u32, e: u32) -> f32 {
  switch fmt {
    case 0u: { return bitcast<f32>(u32At(e * 4u)); }
    case 1u: { return unpack2x16float(u16At(e * 2u)).x; }
    default: { return bitcast<f32>(u16At(e * 2u) << 16u); }
  }
}
