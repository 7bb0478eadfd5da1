/**
 * Reading the engine's /metrics in tests: the Prometheus text format parsed
 * into samples, and a wait for a value to appear there.
 */
import type { RunningEngine, World } from "../../harness/World.ts"
import { HttpServer } from "../../src/http/HttpServer.ts"

/** One sample: a metric name, its labels and its value. */
export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const labelPattern = /(\w+)="((?:[^"\\]|\\.)*)"/g

/** Parses the text format (comments skipped; label values unescaped for `\"` and `\\` only). */
export const parseMetrics = (text: string): Array<Sample> =>
  text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const valueAt = line.lastIndexOf(" ")
      const series = line.slice(0, valueAt)
      const brace = series.indexOf("{")
      const labels: Record<string, string> = {}
      if (brace >= 0) {
        for (const [, key, value] of series.slice(brace).matchAll(labelPattern))
          if (key !== undefined && value !== undefined) labels[key] = value.replace(/\\(["\\])/g, "$1")
      }
      return {
        name: brace >= 0 ? series.slice(0, brace) : series,
        labels,
        value: Number(line.slice(valueAt + 1)),
      }
    })

/** The sum of the samples of `name` whose labels include `labels` (0 when there are none). */
export const sumOf = (
  samples: ReadonlyArray<Sample>,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number =>
  samples
    .filter((sample) => sample.name === name)
    .filter((sample) => Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
    .reduce((sum, sample) => sum + sample.value, 0)

/** The base URL of an engine's HTTP server. */
export const httpUrlOf = async (engine: RunningEngine): Promise<string> =>
  (await engine.runtime.runPromise(HttpServer)).url

/** Scrapes `/metrics` once. */
export const scrape = async (url: string): Promise<Array<Sample>> => {
  const response = await fetch(`${url}/metrics`)
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`)
  return parseMetrics(await response.text())
}

/** Scrapes until `holds` is true of the samples; returns them (fails after the world's wait timeout). */
export const scrapeUntil = async (
  env: World,
  url: string,
  what: string,
  holds: (samples: ReadonlyArray<Sample>) => boolean,
): Promise<Array<Sample>> => {
  let last: Array<Sample> = []
  await env.waitFor(what, async () => {
    last = await scrape(url)
    return holds(last)
  })
  return last
}
