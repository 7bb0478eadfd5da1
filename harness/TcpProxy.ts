/**
 * A TCP proxy the harness controls, to make Postgres or NATS unreachable for
 * one engine without touching the shared servers: the engine connects
 * through it, and `cut()` drops every open connection and resets every new
 * one until `restore()`.
 */
import { connect, createServer, type Server, type Socket } from "node:net"

/** A proxy on a free port of 127.0.0.1, forwarding to one target. */
export class TcpProxy {
  private readonly open = new Set<Socket>()
  private down = false
  /** Connections reset while cut (the client kept trying). */
  refused = 0

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Starts forwarding `127.0.0.1:<port>` to `targetHost:targetPort`. */
  static async start(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined
    const server = createServer((client) => proxy?.accept(client, targetHost, targetPort))
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      server.listen(0, "127.0.0.1", () => resolve())
    })
    const address = server.address()
    if (typeof address !== "object" || address === null) throw new Error("the proxy has no port")
    proxy = new TcpProxy(server, address.port)
    return proxy
  }

  /** `url` with its host and port replaced by the proxy's (a postgres:// or nats:// URL). */
  route(url: string): string {
    const routed = new URL(url)
    routed.hostname = "127.0.0.1"
    routed.port = String(this.port)
    return routed.toString()
  }

  /** True between `cut` and `restore`. */
  get isCut(): boolean {
    return this.down
  }

  /** Drops every open connection (as a reset) and resets new ones until `restore`. */
  cut(): void {
    this.down = true
    for (const socket of this.open) socket.resetAndDestroy()
    this.open.clear()
  }

  /** Forwards new connections again. */
  restore(): void {
    this.down = false
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const socket of this.open) socket.destroy()
    this.open.clear()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private accept(client: Socket, host: string, port: number): void {
    if (this.down) {
      this.refused += 1
      client.resetAndDestroy()
      return
    }
    const upstream = connect(port, host)
    this.open.add(client)
    this.open.add(upstream)
    const drop = () => {
      this.open.delete(client)
      this.open.delete(upstream)
      client.destroy()
      upstream.destroy()
    }
    client.on("error", drop)
    upstream.on("error", drop)
    client.on("close", drop)
    upstream.on("close", drop)
    client.pipe(upstream)
    upstream.pipe(client)
  }
}
