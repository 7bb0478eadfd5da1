/**
 * A private nats-server for fault scenario 3: JetStream on a free port with its own store
 * directory, so stopping and restarting it never touches the shared server on 4222.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

const natsServerBin = process.env.NATS_SERVER_BIN ?? "nats-server"

/** A TCP port of 127.0.0.1 nobody listens on right now. */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject()))
    })
  })

/** A nats-server that can be stopped and started again on the same port and store. */
export class PrivateNatsServer {
  private process: ChildProcess | undefined

  private constructor(
    readonly port: number,
    readonly storeDirectory: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`
  }

  /** Starts a server on a free port with a fresh store directory; resolves once it is ready. */
  static async start(): Promise<PrivateNatsServer> {
    const server = new PrivateNatsServer(await freePort(), await mkdtemp(join(tmpdir(), "rp-faults-nats-")))
    await server.restart()
    return server
  }

  /** Starts the server (again) on the same port and store directory; resolves once it is ready. */
  async restart(): Promise<void> {
    const child = spawn(
      natsServerBin,
      ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.storeDirectory],
      { stdio: ["ignore", "pipe", "pipe"] },
    )
    this.process = child
    let output = ""
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output = (output + chunk.toString()).slice(-20_000)
        if (output.includes("Server is ready")) resolve()
      }
      child.stdout?.on("data", onData)
      child.stderr?.on("data", onData)
      child.once("exit", (code) => reject(new Error(`nats-server exited (${code}):\n${output}`)))
    })
  }

  /** Stops the server with `signal` and waits until the process is gone. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.process
    this.process = undefined
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    await new Promise((resolve) => {
      child.once("exit", resolve)
      child.kill(signal)
    })
  }

  /** Stops the server and removes its store. */
  async dispose(): Promise<void> {
    await this.stop("SIGKILL")
    await rm(this.storeDirectory, { recursive: true, force: true })
  }
}
