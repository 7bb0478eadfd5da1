/**
 * The wait advised to a refused channel follows the instance's pace: the requests ahead of it
 * times how long one takes, over how many run at once; within bounds, and spread out.
 */
import { describe, expect, it } from "vitest"
import { MAX_RETRY_AFTER_MS, makeRetryAdvice } from "../../src/protocol/RetryAdvice.ts"

describe("retry advice", () => {
  const clock = () => {
    let at = 0
    return { now: () => at, advance: (ms: number) => (at += ms) }
  }

  it("advises at least half the queue wait when little is ahead", () => {
    const { now } = clock()
    const advice = makeRetryAdvice({ concurrency: 256, queueWaitMs: 2_000, now })
    advice.finished(10)
    expect(advice.refused(0, 0.5)).toBe(1_000)
    expect(advice.refused(0, 0)).toBe(500)
    expect(advice.refused(0, 0.999)).toBe(1_499)
  })

  it("grows with the requests ahead and how long each takes, up to its bound", () => {
    const { now } = clock()
    const advice = makeRetryAdvice({ concurrency: 256, queueWaitMs: 2_000, now })
    for (let index = 0; index < 100; index++) advice.finished(700)
    // 2,000 waiting and this one refused: about 2,001 × ~700 ms / 256 ≈ 5.5 s.
    const advised = advice.refused(2_000, 0.5)
    expect(advised).toBeGreaterThan(5_000)
    expect(advised).toBeLessThan(6_000)
    for (let index = 0; index < 10_000; index++) advice.refused(2_000, 0.5)
    expect(advice.refused(2_000, 0.999)).toBeLessThanOrEqual(MAX_RETRY_AFTER_MS)
  })

  it("counts on the rate it measured when that is better than the durations suggest", () => {
    const { now, advance } = clock()
    const advice = makeRetryAdvice({ concurrency: 10, queueWaitMs: 100, now })
    // Each request takes a second with ten at once (10 a second), but 100 finished in the last second.
    for (let index = 0; index < 100; index++) advice.finished(1_000)
    advance(1_000)
    advice.finished(1_000)
    // 199 waiting and this one: 200 at 100 a second, 2 s, not the 20 s the durations suggest.
    expect(advice.refused(199, 0.5)).toBe(2_000)
  })

  it("forgets refusals once a quiet second has passed", () => {
    const { now, advance } = clock()
    const advice = makeRetryAdvice({ concurrency: 1, queueWaitMs: 100, now })
    for (let index = 0; index < 100; index++) advice.finished(100)
    for (let index = 0; index < 50; index++) advice.refused(0, 0.5)
    expect(advice.refused(0, 0.5)).toBeGreaterThan(4_000)
    advance(2_500)
    expect(advice.refused(0, 0.5)).toBeLessThan(200)
  })
})
