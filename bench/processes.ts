/**
 * Child processes of the benchmark (the engine, the fake hubs): started with
 * `node` directly (not through npm), so the pid we hold is the process doing the
 * work and its `/proc/<pid>/status` tells the truth about memory. Their
 * output goes to a log file, never to the bench's own stdout, whose last
 * line must stay the JSON summary.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream, readFileSync } from "node:fs"
import { createInterface } from "node:readline"

/** A started child process whose output is logged and watched for lines. */
export interface BenchProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  readonly logPath: string
  /** Resolves with the first output line containing `text`; rejects on exit or timeout. */
  waitForLine(text: string, timeoutMs: number): Promise<string>
  /** The last output lines, for error messages. */
  tail(lines: number): string
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<string>
  /** True while the process runs. */
  running(): boolean
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code or signal. */
  stop(graceMs: number): Promise<string>
}

const started = new Set<ChildProcess>()

/** Sends SIGKILL to every child this module started that still runs (for an interrupted bench). */
export const killStartedProcesses = (): void => {
  for (const child of started) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}

interface LineWatcher {
  readonly text: string
  readonly resolve: (line: string) => void
}

/**
 * Starts `<script>` on node in `cwd` with `env`, logging its output to `logPath`: TypeScript through
 * tsx (`node --import tsx`), a built `.mjs` bundle as it is.
 */
export const startNodeProcess = (
  name: string,
  script: string,
  options: {
    readonly cwd: string
    readonly env: NodeJS.ProcessEnv
    readonly logPath: string
    /** Node flags the process always runs with (the engine: those of `npm start`). */
    readonly nodeArgs?: ReadonlyArray<string>
  },
): BenchProcess => {
  // BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") reaches every child: node refuses them in NODE_OPTIONS.
  const extraNodeArgs = (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== "")
  const child = spawn(
    process.execPath,
    // A built bundle (.mjs) runs on plain node; TypeScript sources through tsx.
    [
      ...(options.nodeArgs ?? []),
      ...extraNodeArgs,
      ...(script.endsWith(".mjs") ? [] : ["--import", "tsx"]),
      script,
    ],
    {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe"],
    },
  )
  if (child.pid === undefined) throw new Error(`${name}: could not start ${script}`)
  const pid = child.pid
  started.add(child)
  const log = createWriteStream(options.logPath)
  const recent: Array<string> = []
  const watchers = new Set<LineWatcher>()
  let alive = true
  const exited = new Promise<string>((resolve) => {
    // "close", not "exit": by then every output line has been read, the last one included.
    child.on("close", (code, signal) => {
      alive = false
      started.delete(child)
      resolve(signal ?? String(code))
    })
  })
  const onLine = (line: string) => {
    log.write(`${line}\n`)
    recent.push(line)
    if (recent.length > 200) recent.shift()
    for (const watcher of watchers) {
      if (line.includes(watcher.text)) {
        watchers.delete(watcher)
        watcher.resolve(line)
      }
    }
  }
  for (const stream of [child.stdout, child.stderr]) {
    if (stream !== null)
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on("line", onLine)
  }
  void exited.then(() => log.end())

  const tail = (lines: number) => recent.slice(-lines).join("\n")
  return {
    name,
    child,
    pid,
    logPath: options.logPath,
    exited,
    running: () => alive,
    tail,
    waitForLine: (text, timeoutMs) =>
      new Promise((resolve, reject) => {
        const found = recent.find((line) => line.includes(text))
        if (found !== undefined) return resolve(found)
        const watcher: LineWatcher = {
          text,
          resolve: (line) => {
            clearTimeout(timer)
            resolve(line)
          },
        }
        const fail = (why: string) => {
          watchers.delete(watcher)
          clearTimeout(timer)
          reject(new Error(`${name}: ${why} before printing "${text}"; last output:\n${tail(30)}`))
        }
        const timer = setTimeout(() => fail(`no line within ${timeoutMs} ms`), timeoutMs)
        watchers.add(watcher)
        void exited.then((code) => {
          if (watchers.has(watcher)) fail(`exited (${code})`)
        })
      }),
    stop: async (graceMs) => {
      if (!alive) return exited
      child.kill("SIGTERM")
      const timer = setTimeout(() => {
        if (alive) child.kill("SIGKILL")
      }, graceMs)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}

/** A field of `/proc/<pid>/status` in megabytes (VmRSS, VmHWM), or undefined once the process is gone. */
export const memoryMb = (pid: number, field: "VmRSS" | "VmHWM"): number | undefined => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)
    return match?.[1] === undefined ? undefined : Number(match[1]) / 1024
  } catch {
    return undefined
  }
}

/**
 * CPU seconds (user + system, every thread) the process has used so far, from `/proc/<pid>/stat`;
 * undefined once it is gone.
 */
export const cpuSeconds = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name, which is in parentheses and may itself hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name; in clock ticks.
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond
  } catch {
    return undefined
  }
}

// USER_HZ: 100 on every Linux this runs on (`getconf CLK_TCK`).
const clockTicksPerSecond = 100
