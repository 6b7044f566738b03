/**
 * Test helper shared by the backends with queued decoding (CompiledGraph.decodeGreedy: webgpu, cuda): a burst
 * cut short must leave a sequence's text as its uninterrupted run's.
 * @module
 */
import assert from "node:assert/strict";
import type { Engine, GenerateOptions } from "../mod.ts";

/**
 * With engine `e` (queued decoding on; `b` and `a` seeded, ignoreEos, b's maxTokens long enough for a burst):
 * B's tokens stay those of B alone when a request (A) arrives during B's burst, when A decodes beside B and
 * reaches its length, and when A stops on a stop string; A's text ends where its solo run's does.
 */
export async function assertBurstsCutShortKeepText(
  e: Engine,
  b: GenerateOptions,
  a: GenerateOptions,
): Promise<void> {
  const promptB = "The little dog", promptA = "Once upon a time";
  const soloB = (await e.complete(promptB, b)).generatedIds;
  const soloA = await e.complete(promptA, a);

  // a request arrives while B decodes in a burst: B's burst stops, queued steps are dropped
  const got: number[] = [];
  let other: Promise<unknown> | undefined;
  for await (const ev of e.generate(promptB, b)) {
    if (ev.type === "token") got.push(ev.id);
    if (got.length === 12 && !other) other = e.complete(promptA, a);
    if (ev.type === "done") assert.deepEqual(ev.result.generatedIds, soloB, "B with a request arriving");
  }
  await other;

  // another sequence reaching its length, or a stop string, ends a burst both ran in
  const short = e.complete(promptA, { ...a, maxTokens: 9 });
  const withShort = e.complete(promptB, b);
  assert.deepEqual((await short).generatedIds, soloA.generatedIds.slice(0, 9));
  assert.deepEqual((await withShort).generatedIds, soloB, "B beside a sequence that reached its length");
  const stop = soloA.text.slice(20, 26);
  const stopped = e.complete(promptA, { ...a, stop: [stop] });
  const withStop = e.complete(promptB, b);
  const s = await stopped;
  assert.equal(s.finishReason, "stop");
  assert.equal(s.text, soloA.text.slice(0, soloA.text.indexOf(stop)));
  assert.deepEqual((await withStop).generatedIds, soloB, "B beside a sequence that stopped");
}
