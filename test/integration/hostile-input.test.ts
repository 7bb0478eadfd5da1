/**
 * Poison and hostile input (contract §1 error codes, §2 dead letters, guarantee 9): on every
 * subject the engine consumes and on every protocol operation, malformed JSON, wrong types,
 * missing fields, unicode edge cases, bad amounts, currencies, dates and time zones, and huge
 * payloads. A message goes to RP_DLQ with its reason and its exact bytes and never blocks its
 * stream; a request gets a clear error code with field paths and writes nothing; the engine
 * keeps answering. A fast-check property throws arbitrary and mutated envelopes at it.
 *
 * NATS 2.9.10 refuses a payload over its max_payload (1 MiB by default) itself: the client
 * fails the publish or request and nothing reaches the engine (tested below). Payloads just
 * under it (~900 KiB) do reach the engine and are tested on every subject.
 */
import { createHash, randomUUID } from "node:crypto"
import { Schema } from "effect"
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { FakeChannel } from "../../fakes/FakeChannel.ts"
import type { FakeProvider } from "../../fakes/FakeProvider.ts"
import { World } from "../../harness/World.ts"
import { ReplyEnvelope } from "../../src/protocol/Envelope.ts"
import { saveProvider } from "../../src/store/ProviderRegistry.ts"
import type { DeadLetter } from "../../src/streams/Messages.ts"
import { createScheduled, rowCounts } from "../support/scenarios.ts"

const rub = (value: number) => ({ value, currency: "RUB" })
const encoder = new TextEncoder()

/** One hostile message: its exact bytes and what the dead letter must say about it. */
interface Poison {
  readonly label: string
  readonly bytes: Uint8Array
  readonly reason: string | RegExp
  /** A path the letter's details must name (schema failures). */
  readonly path?: string
}

const NEAR_LIMIT = 900 * 1024
/** Base64 takes 4/3: past this a copy no longer fits a 1 MiB letter. */
const TOO_BIG_TO_COPY = 700 * 1024
/** An unpaired UTF-16 surrogate: JSON can carry it (`"\ud800"`), UTF-8 and Postgres cannot. */
const LONE_SURROGATE = "id-\ud800-x"
const SCHEMA = "message does not match its schema"

/** A JSON text with `9007199254740993` (2^53 + 1) spliced in where JavaScript cannot write it. */
const withBigNumber = (value: unknown): string =>
  JSON.stringify(value).replace('"__BIG__"', "9007199254740993")

/** Bytes that are not a usable message at all, whatever the subject. */
const malformed = (): Array<Poison> => [
  { label: "not JSON", bytes: encoder.encode("not json at all"), reason: /not JSON/ },
  { label: "truncated JSON", bytes: encoder.encode('{"at": "2027-'), reason: /not JSON/ },
  { label: "empty", bytes: new Uint8Array(), reason: /not JSON/ },
  {
    label: "invalid UTF-8",
    bytes: new Uint8Array([0x7b, 0xff, 0xfe, 0x00, 0x7d]),
    reason: /not valid UTF-8/,
  },
  {
    label: "UTF-8-encoded surrogate",
    bytes: new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22]),
    reason: /not valid UTF-8/,
  },
  { label: "null", bytes: encoder.encode("null"), reason: SCHEMA },
  { label: "array", bytes: encoder.encode("[1,2]"), reason: SCHEMA },
  { label: "number", bytes: encoder.encode("42"), reason: SCHEMA },
  { label: "string", bytes: encoder.encode('"text"'), reason: SCHEMA },
]

/** Every field dropped and retyped in turn, ids with unicode poison and huge, bad timestamps and money. */
const hostileFields = (
  valid: Record<string, unknown>,
  options: {
    readonly ids: ReadonlyArray<string>
    readonly timestamps: ReadonlyArray<string>
    readonly money: ReadonlyArray<string>
  },
): Array<Poison> => {
  const variant = (label: string, path: string, patch: Record<string, unknown>, text?: string): Poison => ({
    label,
    path,
    reason: SCHEMA,
    bytes: encoder.encode(text ?? JSON.stringify({ ...valid, ...patch })),
  })
  const poisons: Array<Poison> = []
  for (const field of Object.keys(valid)) {
    const { [field]: _dropped, ...rest } = valid
    poisons.push({
      label: `${field} missing`,
      path: field,
      reason: SCHEMA,
      bytes: encoder.encode(JSON.stringify(rest)),
    })
    poisons.push(
      variant(`${field} retyped`, field, { [field]: typeof valid[field] === "string" ? 12 : "12" }),
    )
    poisons.push(variant(`${field} null`, field, { [field]: null }))
  }
  for (const field of options.ids) {
    poisons.push(variant(`${field} lone surrogate`, field, { [field]: LONE_SURROGATE }))
    poisons.push(variant(`${field} NUL`, field, { [field]: "id\u0000x" }))
    poisons.push(variant(`${field} blank`, field, { [field]: "  " }))
  }
  // One huge field per message kind is enough to prove the size path; more would only cost time.
  const [hugeField] = options.ids
  if (hugeField !== undefined)
    poisons.push(variant(`${hugeField} ~900 KiB`, hugeField, { [hugeField]: "x".repeat(NEAR_LIMIT) }))
  for (const field of options.timestamps) {
    for (const at of [
      "2027-02-30T10:00:00Z",
      "2027-01-01T10:00:00+25:00",
      "2027-01-01T24:00:00Z",
      "2026-12-31T23:59:60Z",
      "2027-01-01T10:00:00",
      "2027-01-01T10:00:00 Europe/Moscow",
      "1735689600",
    ])
      poisons.push(variant(`${field} ${at}`, field, { [field]: at }))
  }
  for (const field of options.money) {
    const money = valid[field] as { value: number; currency: string }
    poisons.push(variant(`${field} fraction`, `${field}.value`, { [field]: { ...money, value: 1.5 } }))
    poisons.push(variant(`${field} string value`, `${field}.value`, { [field]: { ...money, value: "100" } }))
    poisons.push(
      variant(
        `${field} 2^53+1`,
        `${field}.value`,
        {},
        withBigNumber({ ...valid, [field]: { ...money, value: "__BIG__" } }),
      ),
    )
    poisons.push(
      variant(
        `${field} 1e400`,
        `${field}.value`,
        {},
        JSON.stringify({ ...valid, [field]: { ...money, value: "__BIG__" } }).replace('"__BIG__"', "1e400"),
      ),
    )
    for (const currency of ["XXX", "rub", "RUBX", ""])
      poisons.push(
        variant(`${field} currency ${currency}`, `${field}.currency`, { [field]: { ...money, currency } }),
      )
  }
  return poisons
}

describe("hostile input", () => {
  let env: World
  let operator: FakeProvider
  let utility: FakeProvider

  beforeAll(async () => {
    // Two deliveries at most: a message that fails processing reaches the DLQ quickly, so a
    // case that fails in the handler instead of the decoder shows up as a "processing failed" reason.
    env = await World.create({ consumerMaxDeliveries: 2 }, "hostile")
    await env.startEngine()
    const provider = (
      providerId: string,
      periodic: boolean,
      supportsThreshold: boolean,
      supportsDebt: boolean,
    ) =>
      saveProvider(env.db, {
        providerId,
        displayName: providerId,
        periodic,
        remindAfter: "P30D",
        supportsDebt,
        supportsThreshold,
      })
    await provider("isp-1", true, false, false)
    await provider("mobile-op", false, true, false)
    await provider("city-water", false, false, true)
    await env.startHub()
    operator = await env.startProvider("mobile-op")
    utility = await env.startProvider("city-water", () => ({
      debts: [{ billId: "bill-jan", amount: rub(30_000), dueDate: "2027-01-25" }],
    }))
    await env.tick("2026-12-31T00:00:00Z")
  }, 30_000)
  afterAll(async () => {
    await env?.dispose()
  })

  const letters = async (stream: string): Promise<Array<DeadLetter>> =>
    (await env.messages(env.topology.streams.deadLetters, env.topology.subjects.deadLetter(stream))).map(
      (message) => message.json as DeadLetter,
    )

  /** Publishes every poison on `subject` and returns their stream sequences. */
  const publishAll = async (subject: string, poisons: ReadonlyArray<Poison>) => {
    const published = new Map<number, Poison>()
    for (const poison of poisons) {
      const ack = await env.js.publish(subject, poison.bytes)
      published.set(ack.seq, poison)
    }
    return published
  }

  /** Every poison is in the DLQ with its subject, its exact bytes and its reason; nothing else is. */
  const expectDeadLettered = async (stream: string, subject: string, published: Map<number, Poison>) => {
    const found = new Map((await letters(stream)).map((letter) => [letter.streamSequence, letter]))
    for (const [seq, poison] of published) {
      const letter = found.get(seq)
      expect(letter, `${poison.label} was not dead-lettered`).toBeDefined()
      if (letter === undefined) continue
      expect([poison.label, letter.subject]).toEqual([poison.label, subject])
      expect([poison.label, letter.reason]).toEqual([
        poison.label,
        typeof poison.reason === "string" ? poison.reason : expect.stringMatching(poison.reason),
      ])
      if (poison.bytes.length > TOO_BIG_TO_COPY) {
        // Too big to copy into a letter under max_payload: the letter says so, the original stays put.
        expect(letter.dataOmitted).toEqual({
          bytes: poison.bytes.length,
          sha256: createHash("sha256").update(poison.bytes).digest("hex"),
        })
        const original = await env.jsm.streams.getMessage(stream, { seq })
        expect(Buffer.from(original?.data ?? []).equals(Buffer.from(poison.bytes))).toBe(true)
      } else {
        expect([poison.label, Buffer.from(letter.data, "base64").equals(Buffer.from(poison.bytes))]).toEqual([
          poison.label,
          true,
        ])
      }
      if (poison.path !== undefined) {
        expect([poison.label, letter.details.some((detail) => detail.path === poison.path)]).toEqual([
          poison.label,
          true,
        ])
        expect(letter.details.every((detail) => detail.message.length > 0)).toBe(true)
      }
    }
  }

  const paymentSucceeded = (subscriptionId: string) =>
    env.waitFor(`a succeeded payment of ${subscriptionId}`, async () => {
      const rows = await env.db
        .selectFrom("payments")
        .select("status")
        .where("subscription_id", "=", subscriptionId)
        .execute()
      return rows.some((row) => row.status === "succeeded")
    })

  const stillServing = async () => {
    const reply = await env.channel().request("template.list", {}, { clientId: "probe-1" })
    expect(reply.status).toBe("ok")
  }

  describe("on every consumed subject", () => {
    it("rp.tick: dead-letters every poison and still processes the next tick", async () => {
      const subscription = await createScheduled(env.channel(), "tick-client")
      const { subjects, streams, consumers } = env.topology
      const published = await publishAll(subjects.tick, [
        ...malformed(),
        ...hostileFields({ at: "2027-01-01T06:00:00Z" }, { ids: [], timestamps: ["at"], money: [] }),
        // A tick is tiny; a huge one is still only a bad `at`.
        {
          label: "at ~900 KiB",
          path: "at",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ at: "x".repeat(NEAR_LIMIT) })),
        },
      ])
      await env.tick("2027-01-01T06:00:00Z")
      await paymentSucceeded(subscription.subscriptionId)
      await env.consumerCaughtUp(streams.ticks, consumers.ticks)
      await expectDeadLettered(streams.ticks, subjects.tick, published)
      await stillServing()
    })

    it("hub.payment.result: dead-letters every poison and still applies the next result", async () => {
      const subscription = await createScheduled(env.channel(), "result-client", {
        schedule: { every: "day", time: "09:00", timezone: "Europe/Moscow", startDate: "2027-01-02" },
      })
      const { subjects, streams, consumers } = env.topology
      const valid = {
        paymentId: "5b0d3a52-1111-4222-8333-444455556666",
        status: "succeeded",
        retryable: false,
        at: "2027-01-02T06:00:01Z",
      }
      const published = await publishAll(subjects.hubResult, [
        ...malformed(),
        ...hostileFields(valid, { ids: ["paymentId"], timestamps: ["at"], money: [] }),
        {
          label: "reason NUL",
          path: "reason",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, reason: "no\u0000" })),
        },
        {
          label: "reason lone surrogate",
          path: "reason",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, reason: LONE_SURROGATE })),
        },
        {
          label: "status unknown",
          path: "status",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, status: "maybe" })),
        },
        // Well-formed, but no payment of the engine's: kept with the routing reason.
        {
          label: "emoji paymentId",
          reason: /unknown paymentId/,
          bytes: encoder.encode(JSON.stringify({ ...valid, paymentId: "pay-💸-1" })),
        },
        {
          label: "RTL paymentId",
          reason: /unknown paymentId/,
          bytes: encoder.encode(JSON.stringify({ ...valid, paymentId: "pay-\u202e1-\u200f" })),
        },
      ])
      // The hub answers the next command with a valid result: it must be applied.
      await env.tick("2027-01-02T06:00:00Z")
      await paymentSucceeded(subscription.subscriptionId)
      await env.consumerCaughtUp(streams.hubPayments, consumers.hubResults)
      await expectDeadLettered(streams.hubPayments, subjects.hubResult, published)
      await stillServing()
    })

    it("provider.<id>.threshold.event: dead-letters every poison and still tops up on the next reading", async () => {
      const { subscription } = await env.channel().ok<{ subscription: { subscriptionId: string } }>(
        "subscription.create",
        {
          kind: "threshold",
          template: { name: "Phone", providerId: "mobile-op", account: "+79990001122", source: "card-1" },
          amount: rub(50_000),
          threshold: rub(10_000),
        },
        { clientId: "threshold-client" },
      )
      const { streams, consumers } = env.topology
      const subject = env.topology.subjects.toProvider("mobile-op", "threshold.event")
      const valid = {
        eventId: "ev-1",
        providerId: "mobile-op",
        account: "+79990001122",
        balance: rub(5_000),
        at: "2027-01-02T07:00:00Z",
      }
      const published = await publishAll(subject, [
        ...malformed(),
        // A negative balance is a real balance (a phone in credit), not poison: not tested as one.
        ...hostileFields(valid, {
          ids: ["eventId", "providerId", "account"],
          timestamps: ["at"],
          money: ["balance"],
        }),
        {
          label: "providerId of another provider",
          reason: /the subject names provider/,
          bytes: encoder.encode(JSON.stringify({ ...valid, providerId: "city-water" })),
        },
      ])
      await operator.reportBalance({
        eventId: "ev-1",
        account: valid.account,
        balance: valid.balance,
        at: valid.at,
      })
      await paymentSucceeded(subscription.subscriptionId)
      await env.consumerCaughtUp(streams.providers, consumers.thresholdEvents)
      await expectDeadLettered(streams.providers, subject, published)
      await stillServing()
    })

    it("provider.<id>.debt.response: dead-letters every poison and still pays the next answer's bill", async () => {
      const { subscription } = await env.channel().ok<{ subscription: { subscriptionId: string } }>(
        "subscription.create",
        {
          kind: "debt",
          template: { name: "Water", providerId: "city-water", account: "WTR-1", source: "card-1" },
          limit: rub(500_000),
        },
        { clientId: "debt-client" },
      )
      const { streams, consumers } = env.topology
      const subject = env.topology.subjects.toProvider("city-water", "debt.response")
      const valid = {
        queryId: "7f0c5e8a-0000-4000-8000-000000000000",
        providerId: "city-water",
        account: "WTR-1",
        debts: [{ billId: "bill-x", amount: rub(100), dueDate: "2027-01-25" }],
        at: "2027-01-02T07:00:00Z",
      }
      const bill = (patch: Record<string, unknown>) => ({
        ...valid,
        debts: [{ ...valid.debts[0], ...patch }],
      })
      const poisonBill = (label: string, path: string, patch: Record<string, unknown>): Poison => ({
        label,
        path,
        reason: SCHEMA,
        bytes: encoder.encode(JSON.stringify(bill(patch))),
      })
      const published = await publishAll(subject, [
        ...malformed(),
        ...hostileFields(valid, { ids: ["queryId", "providerId", "account"], timestamps: ["at"], money: [] }),
        poisonBill("bill fraction", "debts.0.amount.value", { amount: { value: 1.5, currency: "RUB" } }),
        poisonBill("bill currency XXX", "debts.0.amount.currency", {
          amount: { value: 100, currency: "XXX" },
        }),
        poisonBill("bill currency rub", "debts.0.amount.currency", {
          amount: { value: 100, currency: "rub" },
        }),
        poisonBill("bill NUL id", "debts.0.billId", { billId: "b\u0000" }),
        poisonBill("bill lone surrogate id", "debts.0.billId", { billId: LONE_SURROGATE }),
        poisonBill("bill due 2027-02-30", "debts.0.dueDate", { dueDate: "2027-02-30" }),
        poisonBill("bill due NUL", "debts.0.dueDate", { dueDate: "2027-01-25\u0000" }),
        poisonBill("bill description NUL", "debts.0.description", { description: "water\u0000" }),
        {
          label: "bill 2^53+1",
          path: "debts.0.amount.value",
          reason: SCHEMA,
          bytes: encoder.encode(withBigNumber(bill({ amount: { value: "__BIG__", currency: "RUB" } }))),
        },
        {
          label: "debts and error",
          path: "debts",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, error: { code: "X", message: "y" } })),
        },
        {
          label: "101 bills",
          path: "debts",
          reason: SCHEMA,
          bytes: encoder.encode(
            JSON.stringify({ ...valid, debts: Array.from({ length: 101 }, () => valid.debts[0]) }),
          ),
        },
        {
          label: "answer to a query never sent",
          reason: /unknown queryId/,
          bytes: encoder.encode(JSON.stringify(valid)),
        },
      ])
      // The next poll's answer, from the fake utility, is valid: its bill must be paid.
      await env.tick("2027-01-02T08:00:00Z")
      await utility.waitForQueries(1)
      await paymentSucceeded(subscription.subscriptionId)
      await env.consumerCaughtUp(streams.providers, consumers.debtResponses)
      await expectDeadLettered(streams.providers, subject, published)
      await stillServing()
    })

    it("hub.payment.completed: dead-letters every poison and still makes a reminder of the next payment", async () => {
      const { subjects, streams, consumers } = env.topology
      const valid = {
        paymentId: "one-off-1",
        clientId: "reminded-1",
        channel: "internet",
        providerId: "isp-1",
        account: "contract-77",
        source: "card-tok-9",
        amount: rub(99_000),
        at: "2027-01-02T09:00:00Z",
      }
      const published = await publishAll(subjects.hubCompleted, [
        ...malformed(),
        ...hostileFields(valid, {
          ids: ["paymentId", "clientId", "channel", "providerId", "account", "source"],
          timestamps: ["at"],
          money: ["amount"],
        }),
        {
          label: "negative amount",
          path: "amount.value",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, amount: rub(-1) })),
        },
        {
          label: "zero amount",
          path: "amount.value",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, amount: rub(0) })),
        },
        // Client ids end up in subjects (rp.notify.<clientId>): the protocol's rule applies here too.
        {
          label: "clientId with emoji",
          path: "clientId",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, clientId: "client-💸" })),
        },
        {
          label: "clientId with a dot",
          path: "clientId",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, clientId: "a.b" })),
        },
        {
          label: "clientId wildcard",
          path: "clientId",
          reason: SCHEMA,
          bytes: encoder.encode(JSON.stringify({ ...valid, clientId: ">" })),
        },
      ])
      await env.js.publish(subjects.hubCompleted, JSON.stringify(valid))
      await env.waitFor("the reminder of the valid payment", async () => {
        const rows = await env.db
          .selectFrom("subscriptions")
          .select("kind")
          .where("client_id", "=", "reminded-1")
          .execute()
        return rows.some((row) => row.kind === "reminder")
      })
      await env.consumerCaughtUp(streams.hubPayments, consumers.hubCompleted)
      await expectDeadLettered(streams.hubPayments, subjects.hubCompleted, published)
      await stillServing()
    })

    it("a publish over NATS's max_payload (1 MiB) is refused by the client and never reaches the engine", async () => {
      const { subjects, streams } = env.topology
      const before = (await env.jsm.streams.info(streams.ticks)).state.last_seq
      await expect(env.js.publish(subjects.tick, new Uint8Array(1024 * 1024 + 1))).rejects.toThrow(/payload/i)
      expect((await env.jsm.streams.info(streams.ticks)).state.last_seq).toBe(before)
      await stillServing()
    })
  })

  /** Row counts of every table a request could write to. */
  const footprint = () =>
    rowCounts(env.db, ["templates", "subscriptions", "requests", "decisions", "outbox", "payments"])

  const envelope = (
    operation: string,
    body: unknown,
    overrides: Record<string, unknown> = {},
  ): Record<string, unknown> => ({
    v: 3,
    requestId: `hostile-${randomUUID()}`,
    channel: "mobile",
    terminal: "device-42",
    clientId: "hostile-1",
    sentAt: "2026-12-01T10:00:00+03:00",
    operation,
    body,
    ...overrides,
  })

  const send = (payload: unknown, channel = "mobile") =>
    env.channel(channel).send(typeof payload === "string" ? payload : JSON.stringify(payload))

  /** Sends `payload` and checks the reply's code (and paths, when given); returns the error. */
  const refused = async (
    label: string,
    payload: unknown,
    code: string,
    paths?: ReadonlyArray<string>,
    channel = "mobile",
  ) => {
    const reply = await send(payload, channel)
    expect([label, reply.status]).toEqual([label, "error"])
    if (reply.status !== "error") throw new Error(label)
    expect([label, reply.error.code]).toEqual([label, code])
    expect(reply.error.message.length).toBeGreaterThan(0)
    if (paths !== undefined) {
      // A path names the field or something inside it (a retyped object reports its own fields).
      const found = reply.error.details.map((detail) => detail.path)
      for (const path of paths) {
        const named = found.some((other) => other === path || other.startsWith(`${path}.`))
        expect([label, path, named, found]).toEqual([label, path, true, found])
      }
    }
    return reply.error
  }

  const UUID = "7f0c5e8a-0000-4000-8000-000000000000"
  const schedule = {
    every: "month",
    dayOfMonth: 1,
    time: "09:00",
    timezone: "Europe/Moscow",
    startDate: "2027-03-01",
  }
  const inlineTemplate = { name: "Rent", providerId: "isp-1", account: "flat-1", source: "acc-1" }
  /** A valid body of every operation: each case below breaks one thing in it. */
  const validBodies: Record<string, Record<string, unknown>> = {
    "template.create": inlineTemplate,
    "template.get": { templateId: UUID },
    "template.list": { limit: 10 },
    "template.delete": { templateId: UUID },
    "subscription.create": { kind: "scheduled", template: inlineTemplate, amount: rub(100), schedule },
    "subscription.get": { subscriptionId: UUID },
    "subscription.list": { limit: 10, includeHidden: true },
    "subscription.update": { subscriptionId: UUID, expectedVersion: 1, amount: rub(100) },
    "subscription.pause": { subscriptionId: UUID },
    "subscription.resume": { subscriptionId: UUID },
    "subscription.cancel": { subscriptionId: UUID },
    "subscription.skipNext": { subscriptionId: UUID },
    "subscription.history": { subscriptionId: UUID, limit: 10 },
    "subscription.preview": { subscriptionId: UUID, count: 3 },
    "payment.confirm": { subscriptionId: UUID, paymentId: UUID },
    "reminder.accept": { reminderId: UUID, schedule },
    "reminder.decline": { reminderId: UUID },
  }

  describe("on every protocol operation", () => {
    it("covers every operation the engine serves", async () => {
      const known = await refused("unknown", envelope("no.such", {}), "UNKNOWN_OPERATION")
      for (const operation of Object.keys(validBodies)) expect(known.message).toContain(operation)
    })

    it("refuses hostile bodies of every operation with VALIDATION_FAILED and their paths, writing nothing", async () => {
      const before = await footprint()
      for (const [operation, valid] of Object.entries(validBodies)) {
        for (const body of ["text", 42, null, [], true, [valid]])
          await refused(
            `${operation} body ${JSON.stringify(body)}`,
            envelope(operation, body),
            "VALIDATION_FAILED",
            ["body"],
          )
        await refused(
          `${operation} extra`,
          envelope(operation, { ...valid, "sur\u202eprise💸": 1 }),
          "VALIDATION_FAILED",
        )
        for (const field of Object.keys(valid)) {
          if (["limit", "count", "includeHidden"].includes(field)) continue // optional: may be dropped
          const { [field]: _dropped, ...rest } = valid
          // Where the rule is "one of": no template is reported on body.templateId ("give exactly one of
          // templateId or template"); an update without its only term on body.amount ("at least one").
          const path = field === "template" ? "body.templateId" : `body.${field}`
          await refused(`${operation} without ${field}`, envelope(operation, rest), "VALIDATION_FAILED", [
            path,
          ])
        }
        for (const [field, value] of Object.entries(valid)) {
          for (const wrong of [typeof value === "string" ? 12 : "12", { nested: [null] }, null])
            await refused(
              `${operation} ${field}=${JSON.stringify(wrong)}`,
              envelope(operation, { ...valid, [field]: wrong }),
              "VALIDATION_FAILED",
              [`body.${field}`],
            )
        }
        // A body under the 256 KiB request limit with one huge string: a bounded-length problem.
        const [firstField] = Object.keys(valid)
        if (firstField !== undefined && !operation.endsWith(".list"))
          await refused(
            `${operation} huge ${firstField}`,
            envelope(operation, { ...valid, [firstField]: "x".repeat(200 * 1024) }),
            operation.endsWith(".create") ||
              operation.endsWith(".accept") ||
              operation === "payment.confirm" ||
              operation.startsWith("template.") ||
              operation.startsWith("subscription.") ||
              operation.startsWith("reminder.")
              ? "VALIDATION_FAILED"
              : "VALIDATION_FAILED",
            [`body.${firstField}`],
          )
      }
      expect(await footprint()).toEqual(before)
    })

    it("refuses unicode poison where it would be stored, and treats it as an unknown id where it is only looked up", async () => {
      const before = await footprint()
      for (const noise of ["a\u0000b", LONE_SURROGATE, "\udc00", "x\u001b[31m"]) {
        for (const field of ["name", "account", "source"])
          await refused(
            `template ${field} ${JSON.stringify(noise)}`,
            envelope("template.create", { ...inlineTemplate, [field]: noise }),
            "VALIDATION_FAILED",
            [`body.${field}`],
          )
        await refused(
          `field key ${JSON.stringify(noise)}`,
          envelope("template.create", { ...inlineTemplate, fields: { [noise]: "v" } }),
          "VALIDATION_FAILED",
        )
        await refused(
          `field value ${JSON.stringify(noise)}`,
          envelope("template.create", { ...inlineTemplate, fields: { k: noise } }),
          "VALIDATION_FAILED",
          ["body.fields.k"],
        )
        await refused(
          `subscription.create template.name ${JSON.stringify(noise)}`,
          envelope("subscription.create", {
            ...validBodies["subscription.create"],
            template: { ...inlineTemplate, name: noise },
          }),
          "VALIDATION_FAILED",
          ["body.template.name"],
        )
        await refused(
          `accept templateName ${JSON.stringify(noise)}`,
          envelope("reminder.accept", { reminderId: UUID, schedule, templateName: noise }),
          "VALIDATION_FAILED",
          ["body.templateName"],
        )
        // Ids are opaque: one that names nothing is NOT_FOUND, whatever it is made of.
        for (const operation of ["subscription.get", "subscription.pause", "subscription.history"])
          await refused(
            `${operation} id ${JSON.stringify(noise)}`,
            envelope(operation, { subscriptionId: noise }),
            "NOT_FOUND",
          )
        await refused(
          `template.get id ${JSON.stringify(noise)}`,
          envelope("template.get", { templateId: noise }),
          "NOT_FOUND",
        )
      }
      for (const id of ["💸💸💸", "\u202eabc\u200f", "ﷺ", "e\u0301"]) {
        await refused(
          `subscription.get id ${id}`,
          envelope("subscription.get", { subscriptionId: id }),
          "NOT_FOUND",
        )
        await refused(
          `reminder.decline id ${id}`,
          envelope("reminder.decline", { reminderId: id }),
          "NOT_FOUND",
        )
      }
      expect(await footprint()).toEqual(before)
      // Emoji, RTL marks and combining characters are text, not poison: kept exactly as sent.
      const name = "Квартплата 🏠 \u200fשכירות\u200f e\u0301"
      const created = await env
        .channel()
        .ok<{ template: { templateId: string; name: string } }>(
          "template.create",
          { ...inlineTemplate, name },
          { clientId: "hostile-1" },
        )
      expect(created.template.name).toBe(name)
      const read = await env
        .channel()
        .ok<{ template: { name: string } }>(
          "template.get",
          { templateId: created.template.templateId },
          { clientId: "hostile-1" },
        )
      expect(read.template.name).toBe(name)
    })

    it("refuses bad amounts, currencies, dates, times and time zones in every term, writing nothing", async () => {
      const before = await footprint()
      const badMoney: Array<[string, string, string]> = [
        ['{"value": -1, "currency": "RUB"}', "value", "negative"],
        ['{"value": 0, "currency": "RUB"}', "value", "zero"],
        ['{"value": 1.5, "currency": "RUB"}', "value", "fraction"],
        ['{"value": 9007199254740993, "currency": "RUB"}', "value", "2^53+1"],
        ['{"value": 1e400, "currency": "RUB"}', "value", "overflow"],
        ['{"value": "100", "currency": "RUB"}', "value", "string"],
        ['{"value": 100}', "currency", "no currency"],
        ['{"value": 100, "currency": "XXX"}', "currency", "XXX"],
        ['{"value": 100, "currency": "rub"}', "currency", "lowercase"],
        ['{"value": 100, "currency": "RUB\\u0000"}', "currency", "NUL"],
      ]
      /** Operation, a valid body and where in it money goes (a limit or threshold may be zero: not for those two). */
      const moneyTerms: Array<[string, Record<string, unknown>, string, boolean]> = [
        ["subscription.create", validBodies["subscription.create"] ?? {}, "amount", true],
        [
          "subscription.create",
          { kind: "threshold", template: inlineTemplate, amount: rub(100), threshold: rub(10) },
          "amount",
          true,
        ],
        [
          "subscription.create",
          { kind: "threshold", template: inlineTemplate, amount: rub(100), threshold: rub(10) },
          "threshold",
          false,
        ],
        ["subscription.create", { kind: "debt", template: inlineTemplate, limit: rub(100) }, "limit", true],
        ["subscription.update", validBodies["subscription.update"] ?? {}, "amount", true],
        ["subscription.update", { subscriptionId: UUID, expectedVersion: 1, limit: rub(1) }, "limit", true],
        [
          "subscription.update",
          { subscriptionId: UUID, expectedVersion: 1, threshold: rub(1) },
          "threshold",
          false,
        ],
        ["reminder.accept", { reminderId: UUID, schedule, amount: rub(1) }, "amount", true],
      ]
      for (const [operation, body, field, positive] of moneyTerms) {
        for (const [json, part, label] of badMoney) {
          if (!positive && label === "zero") continue
          const text = JSON.stringify(envelope(operation, { ...body, [field]: "__MONEY__" })).replace(
            '"__MONEY__"',
            json,
          )
          await refused(`${operation} ${field} ${label}`, text, "VALIDATION_FAILED", [
            `body.${field}.${part}`,
          ])
        }
      }
      const badSchedule: Array<[Record<string, unknown>, string]> = [
        [{ startDate: "2027-02-30" }, "startDate"],
        [{ startDate: "2027-13-01" }, "startDate"],
        [{ startDate: "27-01-01" }, "startDate"],
        [{ startDate: "2027-01-01T00:00:00Z" }, "startDate"],
        [{ endDate: "2027-02-29" }, "endDate"],
        [{ timezone: "Mars/Olympus" }, "timezone"],
        [{ timezone: "" }, "timezone"],
        [{ timezone: "UTC+3\u0000" }, "timezone"],
        [{ time: "24:00" }, "time"],
        [{ time: "09:60" }, "time"],
        [{ time: "9:00" }, "time"],
        [{ every: "fortnight" }, "every"],
        [{ interval: 0 }, "interval"],
        [{ interval: 1.5 }, "interval"],
        [{ dayOfMonth: 0 }, "dayOfMonth"],
        [{ dayOfMonth: 32 }, "dayOfMonth"],
        [{ maxPayments: -1 }, "maxPayments"],
      ]
      const scheduleTerms: Array<[string, Record<string, unknown>]> = [
        ["subscription.create", validBodies["subscription.create"] ?? {}],
        ["subscription.update", { subscriptionId: UUID, expectedVersion: 1 }],
        ["reminder.accept", { reminderId: UUID }],
      ]
      for (const [operation, body] of scheduleTerms)
        for (const [patch, field] of badSchedule)
          await refused(
            `${operation} schedule ${JSON.stringify(patch)}`,
            envelope(operation, { ...body, schedule: { ...schedule, ...patch } }),
            "VALIDATION_FAILED",
            [`body.schedule.${field}`],
          )
      for (const [field, value] of [
        ["cooldown", "PT-1H"],
        ["cooldown", "1 hour"],
        ["pollEvery", "P"],
      ] as const) {
        const body =
          field === "cooldown"
            ? {
                kind: "threshold",
                template: inlineTemplate,
                amount: rub(100),
                threshold: rub(10),
                cooldown: value,
              }
            : { kind: "debt", template: inlineTemplate, limit: rub(100), pollEvery: value }
        await refused(`${field} ${value}`, envelope("subscription.create", body), "VALIDATION_FAILED", [
          `body.${field}`,
        ])
      }
      await refused(
        "expectedVersion 1.5",
        envelope("subscription.update", { ...validBodies["subscription.update"], expectedVersion: 1.5 }),
        "VALIDATION_FAILED",
        ["body.expectedVersion"],
      )
      await refused(
        "preview count 1e9",
        envelope("subscription.preview", { subscriptionId: UUID, count: 1e9 }),
        "VALIDATION_FAILED",
        ["body.count"],
      )
      await refused("list limit -1", envelope("subscription.list", { limit: -1 }), "VALIDATION_FAILED", [
        "body.limit",
      ])
      expect(await footprint()).toEqual(before)
    })

    it("refuses hostile envelopes with BAD_REQUEST, UNAUTHORIZED or UNKNOWN_OPERATION, writing nothing", async () => {
      const before = await footprint()
      const create = (overrides: Record<string, unknown>) =>
        envelope("template.create", inlineTemplate, overrides)
      for (const payload of ["{not json", "", "null", "[]", "42", '"text"', "true", "\ufeff{}", '{"v":3,']) {
        await refused(`raw ${JSON.stringify(payload)}`, payload, "BAD_REQUEST")
      }
      const badUtf8 = await env.channel().send(new Uint8Array([0x7b, 0xed, 0xa0, 0x80, 0x7d]))
      expect(badUtf8).toMatchObject({ status: "error", error: { code: "BAD_REQUEST" } })
      const envelopeCases: Array<[string, Record<string, unknown>, string]> = [
        ["v string", { v: "3" }, "v"],
        ["v 4", { v: 4 }, "v"],
        ["v 2", { v: 2 }, "v"],
        ["v null", { v: null }, "v"],
        ["v 3.5", { v: 3.5 }, "v"],
        ["requestId empty", { requestId: "" }, "requestId"],
        ["requestId number", { requestId: 12 }, "requestId"],
        ["requestId NUL", { requestId: "r\u0000" }, "requestId"],
        ["requestId lone surrogate", { requestId: LONE_SURROGATE }, "requestId"],
        ["requestId 129 chars", { requestId: "r".repeat(129) }, "requestId"],
        ["channel number", { channel: 1 }, "channel"],
        ["clientId emoji", { clientId: "client-💸" }, "clientId"],
        ["clientId dot", { clientId: "a.b" }, "clientId"],
        ["clientId wildcard", { clientId: "*" }, "clientId"],
        ["clientId RTL", { clientId: "abc\u202e" }, "clientId"],
        ["clientId 129 chars", { clientId: "c".repeat(129) }, "clientId"],
        ["terminal number", { terminal: 42 }, "terminal"],
        ["terminal NUL", { terminal: "t\u0000" }, "terminal"],
        ["sentAt 2027-02-30", { sentAt: "2027-02-30T10:00:00+03:00" }, "sentAt"],
        ["sentAt +25:00", { sentAt: "2026-12-01T10:00:00+25:00" }, "sentAt"],
        ["sentAt no offset", { sentAt: "2026-12-01T10:00:00" }, "sentAt"],
        ["sentAt named zone", { sentAt: "2026-12-01T10:00:00 Mars/Olympus" }, "sentAt"],
        ["sentAt leap second", { sentAt: "2026-12-31T23:59:60Z" }, "sentAt"],
        ["sentAt epoch", { sentAt: 1_780_000_000 }, "sentAt"],
        ["operation number", { operation: 7 }, "operation"],
        ["operation empty", { operation: "" }, "operation"],
        ["operation lone surrogate", { operation: "\ud800" }, "operation"],
      ]
      for (const [label, overrides, path] of envelopeCases) {
        const error = await refused(label, create(overrides), "BAD_REQUEST", [path])
        expect(error.message).toMatch(/V3 request envelope/)
      }
      for (const field of ["v", "requestId", "channel", "clientId", "sentAt", "operation", "body"]) {
        const { [field]: _dropped, ...rest } = create({})
        await refused(`without ${field}`, rest, "BAD_REQUEST", [field])
      }
      // The request id is echoed when it is readable, so the channel can match the refusal.
      const echoed = await send(create({ v: 4, requestId: "echo-me" }))
      expect(echoed.requestId).toBe("echo-me")
      await refused("channel mismatch", create({ channel: "atm" }), "UNAUTHORIZED")
      await refused("channel lone surrogate", create({ channel: "\ud800" }), "BAD_REQUEST", ["channel"])
      await refused("unknown channel", create({ channel: "rogue" }), "UNAUTHORIZED", undefined, "rogue")
      await refused("unknown operation", create({ operation: "subscription.teleport" }), "UNKNOWN_OPERATION")
      await refused("operation with emoji", create({ operation: "template.💸" }), "UNKNOWN_OPERATION")
      await refused("prototype operation", create({ operation: "__proto__" }), "UNKNOWN_OPERATION")
      await refused("constructor operation", create({ operation: "constructor" }), "UNKNOWN_OPERATION")
      await refused("toString operation", create({ operation: "toString" }), "UNKNOWN_OPERATION")
      expect(await footprint()).toEqual(before)
    })

    it("refuses requests over 256 KiB, up to just under NATS's 1 MiB, and the server itself refuses more", async () => {
      const before = await footprint()
      const padded = (size: number) =>
        JSON.stringify(envelope("template.create", { ...inlineTemplate, name: "x".repeat(size) }))
      const limit = 256 * 1024
      // Exactly at the limit the request is parsed (and its body found invalid); one byte over, it is not.
      const atLimit = padded(0)
      const fill = limit - Buffer.byteLength(atLimit)
      await refused("256 KiB exactly", padded(fill), "VALIDATION_FAILED", ["body.name"])
      const over = await refused("256 KiB + 1", padded(fill + 1), "BAD_REQUEST")
      expect(over.message).toMatch(/larger than 262144 bytes/)
      await refused("~900 KiB", padded(NEAR_LIMIT), "BAD_REQUEST")
      await refused(
        "~900 KiB of multi-byte text",
        JSON.stringify(envelope("template.create", { ...inlineTemplate, name: "ж".repeat(NEAR_LIMIT / 2) })),
        "BAD_REQUEST",
      )
      // Over max_payload the client refuses to send: nothing reaches the engine.
      await expect(env.channel().send("x".repeat(1024 * 1024 + 1))).rejects.toThrow(/payload/i)
      expect(await footprint()).toEqual(before)
      await stillServing()
    })

    it("never breaks on arbitrary or mutated envelopes (fast-check)", async () => {
      const before = await footprint()
      const channel = new FakeChannel(env.connection, env.settings.naming.rpPrefix, "mobile", 5_000)
      const noise = fc.constantFrom(
        "\u0000",
        "\ud800",
        "\udfff",
        "\u202e",
        "\u200f",
        "\ufeff",
        "💸",
        "e\u0301",
        "\u001b[2J",
        "𝕏",
        "\\",
        '"',
        "__proto__",
      )
      const noisyString = fc
        .tuple(fc.string({ maxLength: 20 }), noise, fc.string({ maxLength: 20 }))
        .map(([a, b, c]) => `${a}${b}${c}`)
      const hugeString = fc.constantFrom(2_000, 70_000, 270_000).map((size) => "ж".repeat(size / 2))
      const anyValue: fc.Arbitrary<unknown> = fc.oneof(
        { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
        { weight: 2, arbitrary: noisyString },
        { weight: 1, arbitrary: hugeString },
        { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, 2 ** 53 + 2, -0, 1e308, Number.MAX_SAFE_INTEGER) },
      )
      const bases = Object.entries(validBodies).map(([operation, body]) => envelope(operation, body))
      type Mutation = (value: Record<string, unknown>) => Record<string, unknown>
      // Mostly the body is broken (the envelope's gates are the cheap part); now and then nothing
      // is, so accepted requests (and their writes) are part of the run too.
      const mutation: fc.Arbitrary<Mutation> = fc.oneof(
        { weight: 2, arbitrary: fc.constant((value: Record<string, unknown>) => value) },
        fc.constantFrom(...Object.keys(bases[0] ?? {})).map(
          (key): Mutation =>
            (value) => {
              const { [key]: _dropped, ...rest } = value
              return rest
            },
        ),
        fc.tuple(fc.constantFrom(...Object.keys(bases[0] ?? {})), anyValue).map(
          ([key, replacement]): Mutation =>
            (value) => ({ ...value, [key]: replacement }),
        ),
        {
          weight: 2,
          arbitrary: fc.tuple(fc.string({ maxLength: 8 }), anyValue).map(
            ([key, replacement]): Mutation =>
              (value) => ({
                ...value,
                body:
                  typeof value.body === "object" && value.body !== null
                    ? { ...value.body, [key]: replacement }
                    : replacement,
              }),
          ),
        },
        {
          weight: 4,
          arbitrary: fc.tuple(fc.nat(), anyValue).map(
            ([index, replacement]): Mutation =>
              (value) => {
                const body = (
                  typeof value.body === "object" && value.body !== null ? value.body : {}
                ) as Record<string, unknown>
                const keys = Object.keys(body)
                const key = keys[index % Math.max(1, keys.length)] ?? "x"
                return { ...value, body: { ...body, [key]: replacement } }
              },
          ),
        },
      )
      const mutated = fc
        .tuple(fc.constantFrom(...bases), fc.array(mutation, { minLength: 1, maxLength: 2 }))
        .map(([base, mutations]) =>
          JSON.stringify(
            mutations.reduce<Record<string, unknown>>((value, apply) => apply(value), {
              ...base,
              requestId: `fuzz-${randomUUID()}`,
            }),
          ),
        )
      const payload = fc.oneof(
        {
          weight: 1,
          arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value) ?? "null"),
        },
        { weight: 1, arbitrary: fc.string({ maxLength: 200, unit: "binary" }) },
        { weight: 6, arbitrary: mutated },
      )
      const codes = new Set([
        "BAD_REQUEST",
        "VALIDATION_FAILED",
        "UNAUTHORIZED",
        "NOT_FOUND",
        "CONFLICT",
        "LIMIT_EXCEEDED",
        "UNKNOWN_OPERATION",
      ])
      const okMutations = new Map<string, string>()
      const seen = new Map<string, number>()
      await fc.assert(
        fc.asyncProperty(payload, async (text) => {
          // The fake channel decodes every reply with the protocol's reply schema: a malformed one throws.
          const reply = await channel.send(text)
          const key = reply.status === "ok" ? "ok" : reply.error.code
          seen.set(key, (seen.get(key) ?? 0) + 1)
          expect(Schema.is(ReplyEnvelope)(reply)).toBe(true)
          if (reply.status === "error") {
            // INTERNAL would mean something unexpected broke: never for hostile input.
            expect([text.slice(0, 300), reply.error.code]).toEqual([
              text.slice(0, 300),
              expect.toSatisfy((code: string) => codes.has(code)),
            ])
          } else if (reply.requestId !== null) {
            const operation = (JSON.parse(text) as { operation: string }).operation
            okMutations.set(reply.requestId, operation)
          }
        }),
        { numRuns: 250, seed: Number(process.env.FUZZ_SEED ?? 20270101) },
      )
      // The run reached past the envelope: bodies were judged, and some requests were accepted.
      expect(seen.get("VALIDATION_FAILED") ?? 0).toBeGreaterThan(0)
      expect(seen.get("BAD_REQUEST") ?? 0).toBeGreaterThan(0)
      // Writes only by the requests that were accepted: each mutating one made its own rows.
      const after = await footprint()
      const accepted = (operation: string) =>
        [...okMutations.values()].filter((op) => op === operation).length
      expect(after.templates - before.templates).toBe(
        accepted("template.create") + accepted("subscription.create"),
      )
      expect(after.subscriptions - before.subscriptions).toBe(accepted("subscription.create"))
      expect(after.requests - before.requests).toBe(
        accepted("template.create") + accepted("subscription.create"),
      )
      expect(after.payments).toBe(before.payments)
      await stillServing()
    }, 60_000)
  })
})
