/**
 * The channel registry over the real NATS and Postgres: signed channels,
 * replays, key rotation, permissions per operation, disabled channels, the
 * CLI, and omnichannel subscriptions (created in one channel, managed from
 * another, every change recording where it came from). Every refusal is
 * UNAUTHORIZED and writes nothing. Registry changes reach the engine by a
 * Postgres notification: tests wait for the change to show on the wire.
 */
import { execFile } from "node:child_process"
import { generateKeyPairSync, type KeyObject } from "node:crypto"
import { promisify } from "node:util"
import { Effect, Redacted } from "effect"
import { sql } from "kysely"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeChannel, Reply } from "../../fakes/FakeChannel.ts"
import { type RunningEngine, World } from "../../harness/World.ts"
import { rawPublicKeyOf, signatureHeaderFor, userNkeyOf } from "../../src/protocol/ChannelKeys.ts"
import { Channels, KNOWN_OPERATIONS } from "../../src/protocol/Channels.ts"
import {
  addChannel,
  rotateChannelKey,
  setChannelDisabled,
  setChannelOperations,
} from "../../src/store/ChannelStore.ts"
import { createScheduled, rowCounts, type SubscriptionResult } from "../support/scenarios.ts"

const run = promisify(execFile)

const errorOf = (reply: Reply) => {
  if (reply.status !== "error") throw new Error(`expected an error reply, got ${JSON.stringify(reply)}`)
  return reply.error
}

const newKey = (): KeyObject => generateKeyPairSync("ed25519").privateKey
const nkeyOf = (key: KeyObject) => userNkeyOf(rawPublicKeyOf(key))

// A seed made with @nats-io/nkeys, as a bank would with `nk -gen user`; its public key is NKEY.
const SEED = "SUAMSKYMWIXPZDSSL64C6JWW5XMXDKOA3ZD3TVAGYMXNEP6SZDO5P55BZA"
const NKEY = "UAGXHMJNIO2DMDM5I6STHRITUZVVL4P3MXHFNLWFZXH73AHGG5NHVQRZ"

const ATM_OPERATIONS = [
  "subscription.get",
  "subscription.list",
  "subscription.pause",
  "subscription.resume",
  "subscription.cancel",
  "subscription.history",
]

const phoneTemplate = (account: string) => ({
  name: "Phone",
  providerId: "mts",
  account,
  source: "card-1",
})

describe("channel registry", () => {
  let env: World
  let engine: RunningEngine
  const keys = { mobile: newKey(), atm: newKey(), kiosk: newKey() }
  let mobile: FakeChannel
  let atm: FakeChannel

  /** Row counts of every table a request could write to. */
  const footprint = () => rowCounts(env.db)

  /** Waits until `channel`'s `template.list` gets `status` (the engine has applied a registry change). */
  const waitForStatus = (what: string, channel: FakeChannel, status: "ok" | "error") =>
    env.waitFor(what, async () => {
      const reply = await channel.request("template.list", {}, { clientId: "probe-1" })
      return reply.status === status
    })

  beforeAll(async () => {
    env = await World.create({}, "channels")
    engine = await env.startEngine()
    // Until a channel is registered the development default is in force.
    const registry = await engine.runtime.runPromise(
      Effect.gen(function* () {
        return yield* (yield* Channels).current
      }),
    )
    expect(registry._tag).toBe("Default")
    expect((await env.channel("internet").request("template.list", {}, { clientId: "c-1" })).status).toBe(
      "ok",
    )

    await addChannel(env.db, {
      id: "mobile",
      displayName: "Mobile bank",
      operations: ["*"],
      publicKey: nkeyOf(keys.mobile),
    })
    await addChannel(env.db, {
      id: "atm",
      displayName: "ATM network",
      operations: ATM_OPERATIONS,
      publicKey: Buffer.from(rawPublicKeyOf(keys.atm)).toString("base64"),
    })
    await addChannel(env.db, {
      id: "cashier",
      displayName: "Cashier desk",
      operations: ["template.list", "template.get"],
      publicKey: null,
    })
    await addChannel(env.db, {
      id: "kiosk",
      displayName: "Kiosk",
      operations: ["*"],
      publicKey: nkeyOf(keys.kiosk),
    })
    mobile = env.channel("mobile").signedWith(keys.mobile)
    atm = env.channel("atm").signedWith(keys.atm)
    await waitForStatus("the registry to replace the default channels", env.channel("mobile"), "error")
  })
  afterAll(async () => {
    await env.dispose()
  })

  it("accepts a good signature and refuses a missing, wrong, tampered or malformed one, writing nothing", async () => {
    const client = { clientId: "signer-1" }
    const created = await mobile.ok<{ template: { templateId: string } }>(
      "template.create",
      phoneTemplate("+79990000001"),
      client,
    )
    expect(created.template.templateId).toBeDefined()

    const before = await footprint()
    const body = phoneTemplate("+79990000002")
    const refusals = [
      await env.channel("mobile").request("template.create", body, client),
      await mobile.signedWith(newKey()).request("template.create", body, client),
      await mobile.request("template.create", body, { ...client, signature: "ed25519:AAAA" }),
      await mobile.request("template.create", body, { ...client, signature: "sha256:abc" }),
      await mobile.request("template.create", body, {
        ...client,
        signature: signatureHeaderFor(new TextEncoder().encode("other bytes"), keys.mobile),
      }),
    ]
    for (const reply of refusals) expect(errorOf(reply).code).toBe("UNAUTHORIZED")
    expect(refusals.map((reply) => errorOf(reply).message)).toEqual([
      expect.stringMatching(/no Rp-Signature header/),
      expect.stringMatching(/does not verify/),
      expect.stringMatching(/64-byte/),
      expect.stringMatching(/must be "ed25519:/),
      expect.stringMatching(/does not verify/),
    ])
    // The same bytes, re-serialised after signing (one space added), no longer verify.
    const envelope = JSON.stringify({
      v: 3,
      requestId: "resigned-1",
      channel: "mobile",
      clientId: "signer-1",
      sentAt: new Date().toISOString(),
      operation: "template.create",
      body,
    })
    const signature = signatureHeaderFor(new TextEncoder().encode(envelope), keys.mobile)
    expect(errorOf(await mobile.send(`${envelope} `, { signature })).code).toBe("UNAUTHORIZED")
    expect(await footprint()).toEqual(before)
    expect((await mobile.send(envelope, { signature })).status).toBe("ok")
  })

  it("refuses a signed request whose sentAt is outside the window, even one whose requestId has a stored reply", async () => {
    const client = { clientId: "replayer-1" }
    const envelope = (requestId: string, sentAt: string) =>
      JSON.stringify({
        v: 3,
        requestId,
        channel: "mobile",
        terminal: "phone-1",
        clientId: client.clientId,
        sentAt,
        operation: "template.create",
        body: phoneTemplate("+79990000010"),
      })
    const original = envelope("replay-1", new Date().toISOString())
    const first = await mobile.send(original)
    expect(first.status).toBe("ok")
    const before = await footprint()

    // A replay of the same signed bytes within the window: the stored reply, no second effect.
    expect(await mobile.send(original)).toEqual(first)
    // The same bytes with a forged signature: refused before the idempotency log is read.
    const forged = await mobile.send(original, {
      signature: signatureHeaderFor(Buffer.from(original), newKey()),
    })
    expect(errorOf(forged).code).toBe("UNAUTHORIZED")
    // Correctly signed, but sent (or captured) six minutes ago, or dated six minutes ahead.
    for (const offsetMs of [-6 * 60_000, 6 * 60_000]) {
      const stale = await mobile.send(envelope("replay-1", new Date(Date.now() + offsetMs).toISOString()))
      expect(errorOf(stale)).toMatchObject({
        code: "UNAUTHORIZED",
        message: expect.stringMatching(/replay protection/),
      })
      const fresh = await mobile.send(envelope("replay-2", new Date(Date.now() + offsetMs).toISOString()))
      expect(errorOf(fresh).code).toBe("UNAUTHORIZED")
    }
    // Four minutes old is inside the default window of five.
    const late = await mobile.send(envelope("replay-1", new Date(Date.now() - 4 * 60_000).toISOString()))
    expect(late).toEqual(first)
    expect(await footprint()).toEqual(before)
  })

  it("lets each channel perform only the operations it was given", async () => {
    const client = { clientId: "perm-1" }
    const subscription = await createScheduled(mobile, client.clientId)
    const before = await footprint()
    const cashier = env.channel("cashier")
    expect((await cashier.request("template.list", {}, client)).status).toBe("ok")
    const refused = [
      await cashier.request("template.create", phoneTemplate("+7999"), client),
      await cashier.request("subscription.list", {}, client),
      await atm.request("template.create", phoneTemplate("+7999"), client),
      await atm.request(
        "subscription.create",
        { kind: "scheduled", templateId: "x", amount: { value: 1, currency: "RUB" } },
        client,
      ),
      await atm.request("subscription.skipNext", { subscriptionId: subscription.subscriptionId }, client),
      await atm.request(
        "subscription.update",
        {
          subscriptionId: subscription.subscriptionId,
          expectedVersion: 1,
          amount: { value: 1, currency: "RUB" },
        },
        client,
      ),
    ]
    for (const reply of refused) {
      expect(errorOf(reply)).toMatchObject({
        code: "UNAUTHORIZED",
        message: expect.stringMatching(/may not perform/),
      })
    }
    expect(await footprint()).toEqual(before)
    // Permissions change like any other registry row.
    await setChannelOperations(env.db, "cashier", ["template.*"])
    await env.waitFor("cashier to be allowed template.create", async () => {
      const reply = await cashier.request("template.create", phoneTemplate("+79990000020"), client)
      return reply.status === "ok"
    })
    expect(errorOf(await cashier.request("subscription.list", {}, client)).code).toBe("UNAUTHORIZED")
  })

  it("refuses unregistered channels, and every request of a disabled one, until it is enabled again", async () => {
    const client = { clientId: "kiosk-1" }
    const internet = env.channel("internet")
    expect(errorOf(await internet.request("template.list", {}, client))).toMatchObject({
      code: "UNAUTHORIZED",
      message: expect.stringMatching(/not registered/),
    })
    const kiosk = env.channel("kiosk").signedWith(keys.kiosk)
    expect((await kiosk.request("template.list", {}, client)).status).toBe("ok")
    await setChannelDisabled(env.db, "kiosk", true)
    await waitForStatus("kiosk to be disabled", kiosk, "error")
    const before = await footprint()
    const refused = await kiosk.request("template.create", phoneTemplate("+79990000030"), client)
    expect(errorOf(refused)).toMatchObject({
      code: "UNAUTHORIZED",
      message: expect.stringMatching(/disabled/),
    })
    expect(await footprint()).toEqual(before)
    await setChannelDisabled(env.db, "kiosk", false)
    await waitForStatus("kiosk to be enabled again", kiosk, "ok")
  })

  it("serves a subscription made in the mobile bank at the ATM, recording each change's channel and terminal", async () => {
    const client = { clientId: "omni-1" }
    const { subscription } = await mobile.ok<{ subscription: SubscriptionResult & { createdBy: unknown } }>(
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "Rent", providerId: "landlord", account: "flat-7", source: "acc-1" },
        amount: { value: 4_500_000, currency: "RUB" },
        schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-01-01" },
      },
      { ...client, terminal: "iphone-15" },
    )
    expect(subscription.createdBy).toMatchObject({ channel: "mobile", terminal: "iphone-15" })
    const atAtm = { ...client, terminal: "atm-0042" }
    const id = { subscriptionId: subscription.subscriptionId }
    const listed = await atm.ok<{ items: Array<{ subscriptionId: string }> }>("subscription.list", {}, atAtm)
    expect(listed.items.map((item) => item.subscriptionId)).toEqual([subscription.subscriptionId])
    expect(
      (await atm.ok<{ subscription: { status: string } }>("subscription.get", id, atAtm)).subscription.status,
    ).toBe("active")
    await atm.ok("subscription.pause", id, atAtm)
    await atm.ok("subscription.resume", id, { ...client, terminal: "atm-0043" })
    await atm.ok("subscription.cancel", id, atAtm)
    const seenInMobile = await mobile.ok<{ subscription: { status: string } }>("subscription.get", id, client)
    expect(seenInMobile.subscription.status).toBe("cancelled")

    const history = await atm.ok<{ entries: Array<{ type: string; outcome: string; by: unknown }> }>(
      "subscription.history",
      id,
      atAtm,
    )
    expect(
      history.entries
        .filter((entry) => entry.type === "decision")
        .map(({ outcome, by }) => ({ outcome, by })),
    ).toEqual([
      { outcome: "cancelled", by: { channel: "atm", terminal: "atm-0042" } },
      { outcome: "resumed", by: { channel: "atm", terminal: "atm-0043" } },
      { outcome: "paused", by: { channel: "atm", terminal: "atm-0042" } },
      { outcome: "created", by: { channel: "mobile", terminal: "iphone-15" } },
    ])
  })

  it("answers NOT_FOUND for another client's resources from any channel, exactly as for missing ones", async () => {
    const owner = { clientId: "owner-9" }
    const mine = await createScheduled(mobile, owner.clientId)
    const { template } = await mobile.ok<{ template: { templateId: string } }>(
      "template.create",
      phoneTemplate("+79990000040"),
      owner,
    )
    const stranger = { clientId: "stranger-9" }
    const missing = "7f0c5e8a-0000-4000-8000-000000000000"
    const before = await footprint()
    for (const [channel, operation] of [
      [atm, "subscription.get"],
      [atm, "subscription.pause"],
      [atm, "subscription.cancel"],
      [atm, "subscription.history"],
      [mobile, "subscription.resume"],
      [mobile, "subscription.preview"],
    ] as const) {
      const foreign = errorOf(
        await channel.request(operation, { subscriptionId: mine.subscriptionId }, stranger),
      )
      const absent = errorOf(await channel.request(operation, { subscriptionId: missing }, stranger))
      expect([operation, foreign.code]).toEqual([operation, "NOT_FOUND"])
      expect(foreign.message.replace(mine.subscriptionId, "ID")).toBe(absent.message.replace(missing, "ID"))
    }
    for (const operation of ["template.get", "template.delete"]) {
      const foreign = errorOf(await mobile.request(operation, { templateId: template.templateId }, stranger))
      expect(foreign.code).toBe("NOT_FOUND")
    }
    expect((await atm.ok<{ items: Array<unknown> }>("subscription.list", {}, stranger)).items).toEqual([])
    expect(await footprint()).toEqual(before)
  })

  it("knows every operation the server offers, so each can be granted", async () => {
    const reply = await mobile.request("subscription.teleport", {}, { clientId: "c-1" })
    const error = errorOf(reply)
    expect(error.code).toBe("UNKNOWN_OPERATION")
    const offered = (error.message.split("known: ")[1] ?? "").split(", ")
    expect(offered.length).toBeGreaterThan(10)
    for (const operation of offered) expect(KNOWN_OPERATIONS).toContain(operation)
  })

  it("refuses the old key once a key is rotated, accepts the new one, and keeps idempotency across it", async () => {
    const client = { clientId: "rotator-1" }
    const options = { ...client, requestId: "rotate-create-1" }
    const body = phoneTemplate("+79990000050")
    const first = await mobile.request("template.create", body, options)
    expect(first.status).toBe("ok")

    const rotated = newKey()
    await rotateChannelKey(env.db, "mobile", nkeyOf(rotated))
    const next = env.channel("mobile").signedWith(rotated)
    await waitForStatus("the new mobile key to be accepted", next, "ok")
    const before = await footprint()
    const old = await mobile.request("template.create", phoneTemplate("+79990000051"), client)
    expect(errorOf(old)).toMatchObject({
      code: "UNAUTHORIZED",
      message: expect.stringMatching(/does not verify/),
    })
    // The retry of a request made before the rotation, signed with the new key, gets its stored reply.
    expect(await next.request("template.create", body, options)).toEqual(first)
    expect(await footprint()).toEqual(before)
    expect((await next.request("template.create", phoneTemplate("+79990000051"), client)).status).toBe("ok")
    mobile = next
  })

  it("applies a change within RP_CHANNELS_REFRESH even when no notification arrives", async () => {
    const kiosk = env.channel("kiosk").signedWith(keys.kiosk)
    expect((await kiosk.request("template.list", {}, { clientId: "c-1" })).status).toBe("ok")
    await sql`ALTER TABLE channels DISABLE TRIGGER channels_changed`.execute(env.db)
    try {
      const changedAt = Date.now()
      await setChannelDisabled(env.db, "kiosk", true)
      await env.waitFor(
        "the periodic refresh to disable kiosk",
        async () => (await kiosk.request("template.list", {}, { clientId: "c-1" })).status === "error",
        env.settings.channelsRefreshMs + 3_000,
      )
      expect(Date.now() - changedAt).toBeLessThan(env.settings.channelsRefreshMs + 3_000)
    } finally {
      await sql`ALTER TABLE channels ENABLE TRIGGER channels_changed`.execute(env.db)
    }
  })

  it("is managed with the channels CLI", async () => {
    const cli = (...args: Array<string>) =>
      run(process.execPath, ["--import", "tsx", "src/cli/channels.ts", ...args], {
        env: { ...process.env, DATABASE_URL: Redacted.value(env.settings.databaseUrl) },
      })
    const added = await cli(
      "add",
      "terminal",
      "--name",
      "Payment terminals",
      "--operations",
      "template.*",
      "--key",
      NKEY,
    )
    expect(added.stdout).toMatch(/registered, signing/)
    const terminal = env.channel("terminal").signedWith(SEED)
    await waitForStatus("the terminal channel to be registered", terminal, "ok")
    expect(
      errorOf(await env.channel("terminal").request("template.list", {}, { clientId: "c-1" })).code,
    ).toBe("UNAUTHORIZED")
    const listed = JSON.parse((await cli("list", "--json")).stdout) as Array<{ id: string; key: string }>
    expect(listed.map((channel) => channel.id)).toEqual(["atm", "cashier", "kiosk", "mobile", "terminal"])
    expect(listed.find((channel) => channel.id === "terminal")?.key).toBe(`nkey ${NKEY.slice(0, 12)}…`)

    await expect(cli("add", "terminal", "--name", "Again", "--operations", "*")).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/already registered/),
    })
    await cli("disable", "terminal")
    await waitForStatus("the terminal channel to be disabled", terminal, "error")
  })
})
