// lib/step.wgsl: the per-step parameter block every kernel may read (binding group 1). Not an op.
// One slot per step in flight; the host writes it with queue.writeBuffer before the step's commands.
//   step[0] nTokens   step[1] nLogits   step[2] nSeqs   step[3] block-table stride (blocks per seq)
//   step[4] 1 when row t's token is tok[step[5] * step[13] + t]: the previous step's device argmax of its
//   logit row t (decoding queued on the device; every row is a decode row)
//   step[6] this slot (argmax / sample write tok[step[6] * step[13] + i])   step[7] attention splits (decode)
//   step[8..12] word offsets of: tokens, positions, seqIndex, logitRows, blockTables
//   step[13] entries of tok per slot (the graph's logit rows)
//   step[14] word offset of the sampling settings: 8 words per logit row (f32 temperature, u32 topK,
//   f32 topP, f32 minP, f32 u, then f32 topP - f32(topP) and u - f32(u), so that topP * z and u * total
//   keep f64's precision of the settings; all zero: greedy), read by the sample kernel
// tok: the sampled tokens of each slot, written by argmax / sample and read by embed.

@group(1) @binding(0) var<storage, read> step: array<i32>;
@group(1) @binding(1) var<storage, read_write> tok: array<u32>;

fn nTokens() -> u32 { return u32(step[0]); }
fn nLogits() -> u32 { return u32(step[1]); }
fn tokenAt(t: u32) -> i32 {
  if (step[4] != 0) { return i32(tok[u32(step[5] * step[13]) + t]); }
  return step[u32(step[8]) + t];
}
fn posAt(t: u32) -> u32 { return u32(step[u32(step[9]) + t]); }
fn seqAt(t: u32) -> u32 { return u32(step[u32(step[10]) + t]); }
fn logitRowAt(i: u32) -> u32 { return u32(step[u32(step[11]) + i]); }
struct Sampling {
  temp: f32,
  topK: u32,
  topP: f32,
  minP: f32,
  u: f32,
  topPLo: f32,
  uLo: f32,
}
fn samplingAt(r: u32) -> Sampling {
  let o = u32(step[14]) + 8u * r;
  return Sampling(bitcast<f32>(step[o]), u32(step[o + 1u]), bitcast<f32>(step[o + 2u]),
    bitcast<f32>(step[o + 3u]), bitcast<f32>(step[o + 4u]), bitcast<f32>(step[o + 5u]),
    bitcast<f32>(step[o + 6u]));
}
// physical cache row of position pos of sequence seq, blocks of bs rows
fn cacheRow(seq: u32, pos: u32, bs: u32) -> u32 {
  let b = step[u32(step[12]) + seq * u32(step[3]) + pos / bs];
  return u32(b) * bs + pos % bs;
}
