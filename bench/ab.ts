/**
 * `npm run bench:ab -- <ref> [<ref> ...]`: the month-start burst for several
 * builds of the engine, interleaved (A B A B ...), so that each pair runs on
 * the machine as it is at that moment. On a shared machine the rate moves
 * ±15% between runs of the same code, more than most single changes are
 * worth; CPU per payment, compared back to back, is what tells them apart.
 *
 * Each ref is a git commit (`HEAD~1`, a branch, a hash) or `.` for the
 * working tree. Its `src/` is bundled as `npm run build` does, into
 * `.bench-out/ab/`, and the bench's engine phase runs that bundle
 * (`BENCH_ONLY=engine BENCH_ENGINE_ENTRY=...`). The bench itself, the seed
 * and the fake hub are the working tree's.
 *
 * Environment: BENCH_AB_ROUNDS (default 3), BENCH_N (default 50,000 here),
 * and anything else `npm run bench` reads.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const projectRoot = join(dirname(fileURLToPath(import.meta.url)), "..")
const refs = process.argv.slice(2)
if (refs.length < 2) {
  console.error("usage: npm run bench:ab -- <ref> <ref> [<ref> ...]   (a git ref, or . for the working tree)")
  process.exit(2)
}
const rounds = Number(process.env.BENCH_AB_ROUNDS ?? 3)
const n = process.env.BENCH_N ?? "50000"
const outDirectory = join(projectRoot, ".bench-out", "ab")
mkdirSync(outDirectory, { recursive: true })

/** A build under test: its engine bundle and its own migrations, both relative to the project. */
interface Build {
  readonly entry: string
  readonly migrations: string
}

/** Bundles `ref`'s engine as `npm run build` would, and its migrations for the seed. */
const build = (ref: string, index: number): Build => {
  const label =
    ref === "."
      ? "working-tree"
      : execFileSync("git", ["rev-parse", "--short", ref], { cwd: projectRoot, encoding: "utf8" }).trim()
  const outfile = join(".bench-out", "ab", `${index}-${label}.mjs`)
  const migrationsFile = join(".bench-out", "ab", `${index}-${label}-migrations.mjs`)
  let sources = projectRoot
  let scratch: string | undefined
  if (ref !== ".") {
    scratch = mkdtempSync(join(tmpdir(), "rp-ab-"))
    const archive = execFileSync("git", ["archive", ref, "src"], {
      cwd: projectRoot,
      maxBuffer: 256 * 2 ** 20,
    })
    execFileSync("tar", ["-x", "-C", scratch], { input: archive })
    sources = scratch
  }
  try {
    // The bundle lives in the project, so its imports of packages resolve to this node_modules.
    const bundle = (source: string, target: string) =>
      execFileSync(
        join(projectRoot, "node_modules", ".bin", "esbuild"),
        [
          join(sources, source),
          "--bundle",
          "--platform=node",
          "--format=esm",
          "--packages=external",
          "--log-level=warning",
          `--outfile=${join(projectRoot, target)}`,
        ],
        { cwd: projectRoot, stdio: "inherit" },
      )
    bundle(join("src", "main.ts"), outfile)
    // An older build refuses a database that ran migrations it does not know: the seed uses its own.
    bundle(join("src", "store", "migrations", "index.ts"), migrationsFile)
  } finally {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true })
  }
  return { entry: outfile, migrations: migrationsFile }
}

interface RunFigures {
  readonly paymentsPerSec: number | null
  readonly engineCpuUsPerPayment: number | null
  readonly peakRssMb: number | null
  readonly machineBusyUs: number | null
}

/** One engine phase of the bench on a build; the figures from its last line (the JSON summary). */
const runOnce = ({ entry, migrations }: Build): RunFigures => {
  const result = spawnSync("npm", ["run", "-s", "bench"], {
    cwd: projectRoot,
    env: {
      ...process.env,
      BENCH_ONLY: "engine",
      BENCH_N: n,
      BENCH_ENGINE_ENTRY: entry,
      BENCH_MIGRATIONS_ENTRY: migrations,
      BENCH_NO_RESULTS: "1",
    },
    encoding: "utf8",
    maxBuffer: 64 * 2 ** 20,
  })
  const lastLine = result.stdout.trim().split("\n").at(-1) ?? ""
  try {
    const summary = JSON.parse(lastLine) as {
      paymentsPerSec: number | null
      engineCpuUsPerPayment: number | null
      peakRssMb: number | null
      cpuUsPerPayment?: { engine?: { machineBusyUs?: number } | null }
    }
    return {
      paymentsPerSec: summary.paymentsPerSec,
      engineCpuUsPerPayment: summary.engineCpuUsPerPayment,
      peakRssMb: summary.peakRssMb,
      machineBusyUs: summary.cpuUsPerPayment?.engine?.machineBusyUs ?? null,
    }
  } catch {
    throw new Error(
      `the bench on ${entry} ended without its summary:\n${result.stdout.slice(-2_000)}${result.stderr.slice(-2_000)}`,
    )
  }
}

const median = (values: ReadonlyArray<number>): number | null => {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? null)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

const entries = refs.map((ref, index) => {
  const built = build(ref, index)
  return { ref, entry: built.entry, built }
})
const results = new Map<string, Array<RunFigures>>(entries.map(({ entry }) => [entry, []]))
for (let round = 1; round <= rounds; round++) {
  for (const { ref, entry, built } of entries) {
    const figures = runOnce(built)
    results.get(entry)?.push(figures)
    console.log(
      `[ab] round ${round}/${rounds}  ${ref.padEnd(12)}  ${figures.paymentsPerSec ?? "-"} payments/s  engine ${figures.engineCpuUsPerPayment ?? "-"} µs  machine ${figures.machineBusyUs ?? "-"} µs/payment  peak RSS ${figures.peakRssMb ?? "-"} MB`,
    )
  }
}
console.log(`[ab] medians of ${rounds} rounds, N ${n}:`)
for (const { ref, entry } of entries) {
  const runs = results.get(entry) ?? []
  const pick = (field: keyof RunFigures) =>
    median(runs.map((run) => run[field]).filter((value): value is number => value !== null))
  console.log(
    `[ab]   ${ref.padEnd(12)}  ${pick("paymentsPerSec") ?? "-"} payments/s  engine ${pick("engineCpuUsPerPayment") ?? "-"} µs  machine ${pick("machineBusyUs") ?? "-"} µs/payment  peak RSS ${pick("peakRssMb") ?? "-"} MB`,
  )
}
