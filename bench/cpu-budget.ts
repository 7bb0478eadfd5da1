/**
 * Where a phase's CPU went, process by process: the engine (or the ceiling's
 * dispatcher, the bench process itself), Postgres, the NATS server and the
 * fake hub. On a 2-core machine that shares one box between all of them the
 * rate is set by the sum, so a target in payments/s is a budget in CPU µs per
 * payment across every process, and this is what shows who spends it.
 *
 * Read from /proc: a Postgres backend that exits during the phase has its time
 * moved into the postmaster's children time when it is reaped, so the sum of
 * every live `postgres` process plus the postmaster's reaped children is
 * continuous across connections coming and going.
 */
import { readdirSync, readFileSync } from "node:fs"

/** CPU seconds used so far by each group of processes, and by the whole machine. */
export interface CpuSnapshot {
  readonly postgres: number
  readonly nats: number
  readonly machineBusy: number
  readonly others: Readonly<Record<string, number>>
}

/** CPU µs per payment between two snapshots, by group. */
export interface CpuBudget {
  readonly postgresUs: number
  readonly natsUs: number
  readonly machineBusyUs: number
  readonly othersUs: Readonly<Record<string, number>>
}

// USER_HZ: 100 on every Linux this runs on (`getconf CLK_TCK`).
const clockTicksPerSecond = 100

interface ProcessTimes {
  readonly pid: number
  readonly parent: number
  readonly command: string
  readonly own: number
  readonly reapedChildren: number
}

const processTimes = (pid: number): ProcessTimes | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const command = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
    // Fields after the command name: state is [0], ppid [1], utime [11], stime [12], cutime [13], cstime [14].
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return {
      pid,
      parent: Number(fields[1]),
      command,
      own: (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond,
      reapedChildren: (Number(fields[13]) + Number(fields[14])) / clockTicksPerSecond,
    }
  } catch {
    return undefined
  }
}

const machineBusySeconds = (): number => {
  const [cpuLine = ""] = readFileSync("/proc/stat", "utf8").split("\n")
  const ticks = cpuLine.trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal ...: busy is everything but idle and iowait.
  const total = ticks.reduce((sum, value) => sum + value, 0)
  return (total - (ticks[3] ?? 0) - (ticks[4] ?? 0)) / clockTicksPerSecond
}

/** Takes a snapshot; `others` names processes the caller started (the engine, the hub) by pid. */
export const cpuSnapshot = (others: Readonly<Record<string, number | undefined>> = {}): CpuSnapshot => {
  const all: Array<ProcessTimes> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const times = processTimes(Number(entry))
    if (times !== undefined) all.push(times)
  }
  const postgresPids = new Set(all.filter((times) => times.command === "postgres").map((times) => times.pid))
  let postgres = 0
  let nats = 0
  for (const times of all) {
    if (postgresPids.has(times.pid)) {
      postgres += times.own
      // The postmaster (a postgres whose parent is not one) holds its reaped backends' time.
      if (!postgresPids.has(times.parent)) postgres += times.reapedChildren
    } else if (times.command === "nats-server") {
      nats += times.own
    }
  }
  const named: Record<string, number> = {}
  for (const [name, pid] of Object.entries(others)) {
    const times = pid === undefined ? undefined : processTimes(pid)
    if (times !== undefined) named[name] = times.own
  }
  return { postgres, nats, machineBusy: machineBusySeconds(), others: named }
}

/** CPU µs per payment spent between `before` and `after`, for the groups present in both. */
export const cpuBudget = (before: CpuSnapshot, after: CpuSnapshot, payments: number): CpuBudget => {
  const perPayment = (seconds: number) => Math.round((seconds * 1e6) / payments)
  const othersUs: Record<string, number> = {}
  for (const [name, seconds] of Object.entries(after.others)) {
    const start = before.others[name]
    if (start !== undefined) othersUs[name] = perPayment(seconds - start)
  }
  return {
    postgresUs: perPayment(after.postgres - before.postgres),
    natsUs: perPayment(after.nats - before.nats),
    machineBusyUs: perPayment(after.machineBusy - before.machineBusy),
    othersUs,
  }
}

/** One line for the progress log: `postgres 160, nats 126, hub 66, engine 475, machine busy 860 µs/payment`. */
export const describeBudget = (budget: CpuBudget): string =>
  [
    ...Object.entries(budget.othersUs).map(([name, us]) => `${name} ${us}`),
    `postgres ${budget.postgresUs}`,
    `nats ${budget.natsUs}`,
    `machine busy ${budget.machineBusyUs} µs/payment`,
  ].join(", ")
