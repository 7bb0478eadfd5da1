/**
 * How long a channel refused as BUSY should wait before sending the request again.
 *
 * A fixed wait brings every refused channel back at once: 5,000 channels refused by an instance
 * that finishes 20 requests a second would return as thousands of requests a second, and the
 * instance would spend its time refusing them again. So the advice follows the instance's own
 * pace: the requests ahead (those waiting and those refused in the last second or two) over the
 * rate it finishes them, the better of two estimates: the requests it finished in the last
 * second, and the requests handled at once over the average time one takes (the first is right
 * once it runs flat out, the second before it does). It is at least half the queue wait, at most
 * `MAX_RETRY_AFTER_MS`, and spread (×0.5 to ×1.5) so channels refused together come back apart.
 */

/** The longest wait ever advised: a channel still gets its answer in reasonable time. */
export const MAX_RETRY_AFTER_MS = 30_000

/** Tracks how long requests take and how many were refused lately, and turns that into a wait. */
export const makeRetryAdvice = (options: {
  readonly concurrency: number
  readonly queueWaitMs: number
  readonly now?: () => number
}) => {
  const now = options.now ?? (() => performance.now())
  // Until a request has been measured, a guess of a quick one.
  let averageMs = 10
  let secondStartedAt = now()
  let refusedThisSecond = 0
  let refusedLastSecond = 0
  let finishedThisSecond = 0
  let finishedLastSecond = 0
  const roll = () => {
    const at = now()
    const elapsed = at - secondStartedAt
    if (elapsed < 1_000) return
    // After a quiet second, nothing from before it still counts.
    refusedLastSecond = elapsed < 2_000 ? refusedThisSecond : 0
    finishedLastSecond = elapsed < 2_000 ? (1_000 * finishedThisSecond) / elapsed : 0
    refusedThisSecond = 0
    finishedThisSecond = 0
    secondStartedAt = at
  }
  return {
    /** A request took `ms` from its start to its reply. */
    finished: (ms: number) => {
      roll()
      finishedThisSecond += 1
      averageMs += (ms - averageMs) / 10
    },
    /** A request is refused as BUSY with `waiting` others queued: the wait to advise, in ms. */
    refused: (waiting: number, random: number = Math.random()): number => {
      roll()
      refusedThisSecond += 1
      const ahead = waiting + refusedThisSecond + refusedLastSecond
      const perSecond = Math.max(finishedLastSecond, (1_000 * options.concurrency) / averageMs)
      const needed = (1_000 * ahead) / perSecond
      const base = Math.min(MAX_RETRY_AFTER_MS / 1.5, Math.max(options.queueWaitMs / 2, needed))
      return Math.max(1, Math.round(base * (0.5 + random)))
    },
  }
}
