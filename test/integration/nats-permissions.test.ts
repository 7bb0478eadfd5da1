/**
 * The NATS server configuration docs/channels.md recommends, taken from the
 * document itself and run on a throwaway nats-server: the server accepts it,
 * and each channel can call its own subject and receive its replies but can
 * neither speak on another channel's subject nor listen to other traffic.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { connect, type NatsConnection, nkeyAuthenticator } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const run = promisify(execFile)
const NATS_SERVER = process.env.NATS_SERVER_BIN ?? "nats-server"

// The seeds of the example public keys in docs/channels.md (made with @nats-io/nkeys).
const SEEDS = {
  engine: "SUAJLQJECATJH4YKGCDAPN46TSOIGUGOUAXUPQ56HMXLSL5NFOXHOVD7JM",
  mobile: "SUAIUMIE3XOJGFD5WGKIVZZLFNCFX27N2RAZLX4TFWBXLTYGWOK3RG4XNY",
  atm: "SUAPWJ5R4QZYR6RNUGSG4465NOTBZKZOAVZTE7TYFSW7V7BHUXPZDWVWXU",
}

/** The fenced block of docs/channels.md that holds the server configuration. */
const documentedConfig = async (): Promise<string> => {
  const text = await readFile(new URL("../../docs/channels.md", import.meta.url), "utf8")
  const block = text.split("```").find((part) => part.includes("# rp-nats.conf"))
  if (block === undefined) throw new Error("docs/channels.md has no rp-nats.conf block")
  return block.replace(/^[a-z]*\n/, "")
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject()))
    })
  })

describe("documented NATS permissions for channels", () => {
  let directory: string
  let configFile: string
  let server: ChildProcess
  let url: string
  const connections: Array<NatsConnection> = []

  const login = async (who: keyof typeof SEEDS, inboxPrefix?: string) => {
    const connection = await connect({
      servers: url,
      authenticator: nkeyAuthenticator(new TextEncoder().encode(SEEDS[who])),
      ...(inboxPrefix === undefined ? {} : { inboxPrefix }),
    })
    connections.push(connection)
    return connection
  }

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), "rp-nats-conf-"))
    configFile = join(directory, "rp-nats.conf")
    const config = (await documentedConfig()).replace("/var/lib/nats-server", join(directory, "jetstream"))
    await writeFile(configFile, config)
    const port = await freePort()
    url = `nats://127.0.0.1:${port}`
    server = spawn(NATS_SERVER, ["-c", configFile, "-a", "127.0.0.1", "-p", String(port)], {
      stdio: ["ignore", "pipe", "pipe"],
    })
    let output = ""
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes("Server is ready")) resolve()
      }
      server.stdout?.on("data", onData)
      server.stderr?.on("data", onData)
      server.once("exit", (code) => reject(new Error(`nats-server exited (${code}):\n${output}`)))
    })
  })

  afterAll(async () => {
    for (const connection of connections) await connection.close().catch(() => undefined)
    if (server !== undefined && server.exitCode === null) {
      const exited = new Promise((resolve) => server.once("exit", resolve))
      server.kill("SIGTERM")
      await exited
    }
    await rm(directory, { recursive: true, force: true })
  })

  it("is a configuration nats-server accepts", async () => {
    const { stdout, stderr } = await run(NATS_SERVER, ["-c", configFile, "-t"])
    expect(`${stdout}${stderr}`).toMatch(/is valid/)
  })

  it("lets a channel call only its own subject, and read only its own inbox", async () => {
    const engine = await login("engine")
    const served = engine.subscribe("rp.v3.*", { queue: "rp-engine" })
    void (async () => {
      for await (const message of served) message.respond(`served ${message.subject}`)
    })()
    await engine.flush()

    const mobile = await login("mobile", "_INBOX_mobile")
    expect((await mobile.request("rp.v3.mobile", "{}", { timeout: 5_000 })).string()).toBe(
      "served rp.v3.mobile",
    )
    await expect(mobile.request("rp.v3.atm", "{}", { timeout: 5_000 })).rejects.toThrow(
      /Permissions Violation for Publish to "rp.v3.atm"/,
    )
    const spy = mobile.subscribe("rp.v3.>")
    await expect(
      (async () => {
        for await (const _ of spy) return "received"
        return "closed"
      })(),
    ).rejects.toThrow(/Permissions Violation for Subscription to "rp.v3.>"/)

    const atm = await login("atm", "_INBOX_atm")
    expect((await atm.request("rp.v3.atm", "{}", { timeout: 5_000 })).string()).toBe("served rp.v3.atm")
    // Without its own inbox prefix a channel cannot even receive its reply.
    const careless = await login("atm")
    await expect(careless.request("rp.v3.atm", "{}", { timeout: 5_000 })).rejects.toThrow(
      /Permissions Violation for Subscription to "_INBOX\./,
    )
    await expect(connect({ servers: url })).rejects.toThrow(/Authorization Violation/)
  })
})
