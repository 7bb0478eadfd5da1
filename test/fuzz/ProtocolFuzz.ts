/**
 * The protocol fuzz suite: fast-check generators of hostile V3 requests for
 * every operation, and the invariants every reply must keep, checked one
 * request at a time against a real engine over NATS. Used by the seeded run
 * in `npm test` (protocol-fuzz.test.ts) and the long run `npm run fuzz`
 * (main.ts).
 *
 * Invariants, per request:
 * - one-reply: exactly one reply arrives (a reply over the server's max_payload cannot be sent, so
 *   it shows as none), and it is a well-formed reply envelope;
 * - keeps-answering: a known-good request right after it is answered ok;
 * - refusal-writes-nothing: a refused request changes no row of any table a request can write and
 *   publishes nothing;
 * - no-leak: no error reply carries a stack trace, a source position or SQL;
 * - no-internal: hostile input is never answered INTERNAL (that means something broke);
 * - documented-rule: a request built to break a documented rule (unknown body field, blank or
 *   invisible-only text, a duration outside any sane range, invalid UTF-8, over 256 KiB) is refused;
 * - follow-up: a subscription or template the engine accepted can then be read, previewed, paused,
 *   resumed and cancelled.
 */
import { randomBytes, randomUUID } from "node:crypto"
import type { JetStreamManager } from "@nats-io/jetstream"
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node"
import { Schema } from "effect"
import fc from "fast-check"
import { type Kysely, sql } from "kysely"
import { World } from "../../harness/World.ts"
import { ReplyEnvelope } from "../../src/protocol/Envelope.ts"
import type { Tables } from "../../src/store/Tables.ts"

// ---------------------------------------------------------------------------------------------
// Request trees: JSON values with raw fragments (numbers JavaScript cannot write, deep nesting)
// and references to ids that exist only once the session has seeded its data.

/** A JSON fragment written as is. */
export class Raw {
  constructor(
    readonly json: string,
    readonly label: string,
  ) {}
}

/** An id resolved when the request is built: a seeded row's, or the request's own. */
export class Ref {
  constructor(readonly role: IdRole) {}
}

export type IdRole =
  | "requestId"
  | "template"
  | "scheduled"
  | "threshold"
  | "debt"
  | "otherClientSubscription"
  | "unknownUuid"

export type Node =
  | null
  | boolean
  | number
  | string
  | Raw
  | Ref
  | ReadonlyArray<Node>
  | { [key: string]: Node }

/** What the session resolves `Ref`s with. */
export interface Ids {
  readonly requestId: string
  readonly template: string
  readonly scheduled: string
  readonly threshold: string
  readonly debt: string
  readonly otherClientSubscription: string
  readonly unknownUuid: string
}

const isPlainObject = (node: Node): node is { [key: string]: Node } =>
  typeof node === "object" &&
  node !== null &&
  !Array.isArray(node) &&
  !(node instanceof Raw) &&
  !(node instanceof Ref)

/** Writes `node` as JSON text. Iterative where it matters: keys may number tens of thousands. */
export const toJson = (node: Node, ids: Ids): string => {
  if (node instanceof Raw) return node.json
  if (node instanceof Ref) return JSON.stringify(ids[node.role])
  if (Array.isArray(node)) return `[${node.map((item) => toJson(item, ids)).join(",")}]`
  if (isPlainObject(node)) {
    const parts: Array<string> = []
    for (const key of Object.keys(node))
      parts.push(`${JSON.stringify(key)}:${toJson(node[key] ?? null, ids)}`)
    return `{${parts.join(",")}}`
  }
  return JSON.stringify(node) ?? "null"
}

/** JSON text (control characters already escaped) with every invisible character escaped too, so a report shows it. */
export const visible = (text: string): string =>
  text.replace(
    /[\u007f-\u00a0\u00ad\u061c\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\u3164\ufeff\ud800-\udfff]/g,
    (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, "0")}`,
  )

/** How a tree is shown in a report: refs by role, raws by label, long strings abbreviated. */
const describeNode = (node: Node, depth = 0): string => {
  if (node instanceof Raw) return node.json.length <= 60 ? node.json : `<${node.label}>`
  if (node instanceof Ref) return `<${node.role}>`
  if (typeof node === "string")
    return node.length <= 60
      ? JSON.stringify(node)
      : `<${node.length} chars: ${JSON.stringify(node.slice(0, 20))}…>`
  if (Array.isArray(node))
    return depth > 3 ? "[…]" : `[${node.map((item) => describeNode(item, depth + 1)).join(",")}]`
  if (isPlainObject(node)) {
    const keys = Object.keys(node)
    if (keys.length > 12)
      return `{<${keys.length} keys: ${keys
        .slice(0, 3)
        .map((key) => JSON.stringify(key))
        .join(",")}…>}`
    return depth > 3
      ? "{…}"
      : `{${keys.map((key) => `${JSON.stringify(key)}:${describeNode(node[key] ?? null, depth + 1)}`).join(",")}}`
  }
  return JSON.stringify(node) ?? "null"
}

// ---------------------------------------------------------------------------------------------
// Requests

/** One generated request. `mustRefuse` names the documented rule it breaks by construction. */
export class FuzzRequest {
  constructor(
    readonly family: string,
    readonly operation: string,
    /** The envelope as a tree, or raw bytes (invalid UTF-8, binary) with `{{id}}` for the request id. */
    readonly message: Node | Uint8Array,
    readonly mustRefuse?: string,
  ) {}

  /** The exact bytes sent. */
  bytes(ids: Ids): Uint8Array {
    if (this.message instanceof Uint8Array) return this.message
    return new TextEncoder().encode(toJson(this.message, ids))
  }

  /** The request's mutating operations keep the first reply of a request id; reads only echo it. */
  get summary(): string {
    const what =
      this.message instanceof Uint8Array ? `${this.message.length} raw bytes` : describeNode(this.message)
    return `[${this.family}] ${this.operation}${this.mustRefuse === undefined ? "" : ` (must be refused: ${this.mustRefuse})`} ${what}`
  }

  [fc.toStringMethod](): string {
    return this.summary
  }
}

const UUID_A = "7f0c5e8a-0000-4000-8000-000000000001"
const rub = (value: Node): Node => ({ value, currency: "RUB" })
const schedule = {
  every: "month",
  dayOfMonth: 1,
  time: "09:00",
  timezone: "Europe/Moscow",
  startDate: "2027-03-01",
} as const
const inlineTemplate = { name: "Rent", providerId: "isp-1", account: "flat-1", source: "acc-1" } as const

/** A valid body of every operation the engine serves (ids of seeded rows where one is needed). */
export const validBodies: Readonly<Record<string, Node>> = {
  "template.create": inlineTemplate,
  "template.get": { templateId: new Ref("template") },
  "template.list": { limit: 10 },
  "template.delete": { templateId: new Ref("unknownUuid") },
  "subscription.create": { kind: "scheduled", template: inlineTemplate, amount: rub(100), schedule },
  "subscription.get": { subscriptionId: new Ref("scheduled") },
  "subscription.list": { limit: 10, includeHidden: true },
  "subscription.update": { subscriptionId: new Ref("threshold"), expectedVersion: 1, amount: rub(100) },
  "subscription.pause": { subscriptionId: new Ref("scheduled") },
  "subscription.resume": { subscriptionId: new Ref("scheduled") },
  "subscription.cancel": { subscriptionId: new Ref("otherClientSubscription") },
  "subscription.skipNext": { subscriptionId: new Ref("scheduled") },
  "subscription.history": { subscriptionId: new Ref("scheduled"), limit: 10 },
  "subscription.preview": { subscriptionId: new Ref("scheduled"), count: 3 },
  "payment.confirm": { subscriptionId: new Ref("scheduled"), paymentId: UUID_A },
  "reminder.accept": { reminderId: new Ref("unknownUuid"), schedule },
  "reminder.decline": { reminderId: new Ref("unknownUuid") },
}

/** More bodies that reach deeper: the other kinds of create, and every term of update. */
const extraBodies: ReadonlyArray<readonly [string, Node]> = [
  [
    "subscription.create",
    { kind: "threshold", template: inlineTemplate, amount: rub(500), threshold: rub(100), cooldown: "PT1H" },
  ],
  ["subscription.create", { kind: "debt", template: inlineTemplate, limit: rub(10_000), pollEvery: "P1D" }],
  ["subscription.create", { kind: "scheduled", templateId: new Ref("template"), amount: rub(100), schedule }],
  [
    "subscription.update",
    { subscriptionId: new Ref("threshold"), expectedVersion: 1, threshold: rub(5), cooldown: "PT2H" },
  ],
  ["subscription.update", { subscriptionId: new Ref("debt"), expectedVersion: 1, pollEvery: "PT12H" }],
  ["subscription.update", { subscriptionId: new Ref("scheduled"), expectedVersion: 1, schedule }],
  ["template.create", { ...inlineTemplate, fields: { contract: "A-1", Имя: "Иван" } }],
]

const envelope = (
  operation: Node,
  body: Node,
  overrides: Record<string, Node> = {},
): Record<string, Node> => ({
  v: 3,
  requestId: new Ref("requestId"),
  channel: "mobile",
  terminal: "fuzz-terminal",
  clientId: "fuzz-1",
  sentAt: "2026-12-01T10:00:00+03:00",
  operation,
  body,
  ...overrides,
})

const operationOf = (node: Node): string => {
  if (!isPlainObject(node)) return "(not an object)"
  const operation = node.operation
  return typeof operation === "string" ? operation : "(bad operation)"
}

// ---------------------------------------------------------------------------------------------
// Values

const LIMIT = 256 * 1024

/** Strings that break text rules in a way the engine must notice, with what is wrong. */
const textCases: ReadonlyArray<readonly [string, string | undefined]> = [
  ["", "blank text is refused"],
  [" ", "blank text is refused"],
  ["\u00a0\u3000", "blank text is refused"],
  ["\u200b", "text made only of zero-width characters is refused"],
  ["\u200b\u200c\u200d\u2060", "text made only of zero-width characters is refused"],
  ["\ufeff\u200b", "text made only of zero-width characters is refused"],
  ["a\u0000b", "control characters are refused"],
  ["a\u0009b", "control characters are refused"],
  ["line\nbreak", "control characters are refused"],
  ["c1\u0085", "control characters are refused"],
  ["esc\u001b[2J", "control characters are refused"],
  ["\ud800", "unpaired surrogates are refused"],
  ["x\udfffy", "unpaired surrogates are refused"],
  ["x".repeat(257), "text is bounded"],
  // No verdict: allowed or not, they must be handled cleanly.
  ["e\u0301", undefined],
  ["\u202eevil", undefined],
  ["\u200bRent", undefined],
  ["💸".repeat(20), undefined],
  ["𝕏", undefined],
  ["مرحبا", undefined],
  ["Ж".repeat(100), undefined],
  ["\u180e", undefined],
  ["\u3164", undefined],
  ["__proto__", undefined],
  ["constructor", undefined],
  ['"\\', undefined],
]

/**
 * Durations at and past every boundary. Verdict: `syntax` (not an ISO 8601 duration), `huge` (longer
 * than a century: no rule of the contract needs that, and date arithmetic breaks long before the
 * number does), `tiny` (under a second: a poll interval that short asks a provider on every tick).
 */
const durationCases: ReadonlyArray<readonly [string, "syntax" | "huge" | "tiny" | undefined]> = [
  ["PT1S", undefined],
  ["PT59S", undefined],
  ["PT1M", undefined],
  ["PT1H", undefined],
  ["P1D", undefined],
  ["P1W", undefined],
  ["P1M", undefined],
  ["P1Y", undefined],
  ["P10Y", undefined],
  ["PT1H30M", undefined],
  ["P1Y2M3W4DT5H6M7.5S", undefined],
  ["PT0S", undefined],
  ["PT0.001S", "tiny"],
  ["P1000Y", "huge"],
  ["P14800000W", "huge"],
  ["P2147483648D", "huge"],
  ["PT9007199254740993S", "huge"],
  ["P99999999999999999999999D", "huge"],
  ["PT-1H", "syntax"],
  ["-P1D", "syntax"],
  ["P", "syntax"],
  ["PT", "syntax"],
  ["P1DT", "syntax"],
  ["1 hour", "syntax"],
  ["P1.5.5D", "syntax"],
  ["p1d", "syntax"],
]

/** Numbers at the edges: of integers, of JavaScript numbers, of every documented range. */
const boundaryNumbers: ReadonlyArray<Raw> = [
  "0",
  "-0",
  "1",
  "-1",
  "1.5",
  "0.1",
  "3",
  "31",
  "32",
  "50",
  "51",
  "200",
  "201",
  "1000",
  "1001",
  "100000",
  "100001",
  "2147483647",
  "2147483648",
  "9007199254740991",
  "9007199254740993",
  "-9007199254740993",
  "1e21",
  "1e308",
  "1e400",
  "-1e400",
  "1e-400",
  "1E2",
].map((json) => new Raw(json, `number ${json}`))

/** A value nested `depth` deep, as arrays or objects. */
const deep = (depth: number, shape: "array" | "object"): Raw =>
  new Raw(
    shape === "array"
      ? `${"[".repeat(depth)}${"]".repeat(depth)}`
      : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`,
    `${shape} nested ${depth} deep`,
  )

const hugeString = fc
  .constantFrom(1_000, 65_536, 200_000, LIMIT - 300)
  .chain((size) =>
    fc.constantFrom("x", "ж", "💸").map((unit) => unit.repeat(Math.floor(size / Buffer.byteLength(unit)))),
  )

/** Any hostile value: wrong types, boundary numbers, unicode, huge and deep values, unknown shapes. */
export const hostileValue: fc.Arbitrary<Node> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom<Node>(null, true, false, 0, "", "12", [], {}, [1, 2], { value: 1 }),
  },
  { weight: 3, arbitrary: fc.constantFrom(...boundaryNumbers) },
  { weight: 3, arbitrary: fc.constantFrom(...textCases.map(([text]) => text)) },
  { weight: 2, arbitrary: fc.constantFrom(...durationCases.map(([text]) => text)) },
  { weight: 2, arbitrary: fc.string({ maxLength: 30, unit: "grapheme" }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 30, unit: "binary" }) },
  { weight: 1, arbitrary: hugeString },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(10, 1_000, 100_000)
      .chain((depth) => fc.constantFrom(deep(depth, "array"), deep(depth, "object"))),
  },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Node> },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Node>(
      new Ref("template"),
      new Ref("scheduled"),
      new Ref("threshold"),
      new Ref("debt"),
      new Ref("otherClientSubscription"),
      new Ref("unknownUuid"),
    ),
  },
)

// ---------------------------------------------------------------------------------------------
// Tree surgery

type Path = ReadonlyArray<string>

/** Every path into the objects of `node` (not into arrays or leaves). */
const pathsOf = (node: Node, prefix: Path = []): Array<Path> => {
  if (!isPlainObject(node)) return []
  return Object.keys(node).flatMap((key) => [
    [...prefix, key],
    ...pathsOf(node[key] ?? null, [...prefix, key]),
  ])
}

/** `node` with the value at `path` replaced (`undefined`: removed). */
const setAt = (node: Node, path: Path, value: Node | undefined): Node => {
  const [head, ...rest] = path
  if (head === undefined) return value ?? null
  const object = isPlainObject(node) ? node : {}
  const copy: { [key: string]: Node } = { ...object }
  if (rest.length === 0) {
    if (value === undefined) delete copy[head]
    else copy[head] = value
  } else copy[head] = setAt(object[head] ?? {}, rest, value)
  return copy
}

/** The objects inside `node` (itself included), as paths. */
const objectPathsOf = (node: Node): Array<Path> => [
  [],
  ...pathsOf(node).filter((path) => isPlainObject(getAt(node, path))),
]

const getAt = (node: Node, path: Path): Node => {
  let current: Node = node
  for (const key of path) current = isPlainObject(current) ? (current[key] ?? null) : null
  return current
}

const allBodies: ReadonlyArray<readonly [string, Node]> = [...Object.entries(validBodies), ...extraBodies]
const anyBody = fc.constantFrom(...allBodies)

// ---------------------------------------------------------------------------------------------
// Families

/** Envelope fields broken one or two at a time; the body stays valid. */
const envelopes: fc.Arbitrary<FuzzRequest> = fc
  .tuple(
    anyBody,
    fc.array(
      fc.tuple(
        fc.constantFrom(
          "v",
          "requestId",
          "channel",
          "terminal",
          "clientId",
          "sentAt",
          "operation",
          "body",
          "extra",
        ),
        fc.option(hostileValue, { nil: undefined, freq: 4 }),
      ),
      { minLength: 1, maxLength: 2 },
    ),
  )
  .map(([[operation, body], changes]) => {
    let message: Node = envelope(operation, body)
    for (const [field, value] of changes) message = setAt(message, [field], value)
    return new FuzzRequest("envelope", operationOf(message), message)
  })

/** Marks the names of fields a mutation adds (U+2063, invisible separator: no operation defines such a name). */
const SIBLING = "\u2063fuzz"

/** Body fields (at any depth) replaced with hostile values, removed, or joined by hostile siblings. */
const bodies: fc.Arbitrary<FuzzRequest> = fc
  .tuple(
    anyBody,
    fc.array(
      fc.tuple(
        fc.nat(),
        fc.constantFrom("replace", "remove", "sibling"),
        hostileValue,
        fc.string({ maxLength: 8 }),
      ),
      {
        minLength: 1,
        maxLength: 3,
      },
    ),
  )
  .map(([[operation, body], changes]) => {
    let mutated = body
    for (const [index, how, value, key] of changes) {
      const paths = pathsOf(mutated)
      const path = paths[index % Math.max(1, paths.length)] ?? ["x"]
      if (how === "replace") mutated = setAt(mutated, path, value)
      else if (how === "remove") mutated = setAt(mutated, path, undefined)
      else mutated = setAt(mutated, [...path.slice(0, -1), `${key}${SIBLING}`], value)
    }
    // A template's `fields` take any name; anywhere else a field the operation does not define is refused.
    const undefinedField = pathsOf(mutated).some(
      (path) => path.at(-1)?.endsWith(SIBLING) === true && path.at(-2) !== "fields",
    )
    return new FuzzRequest(
      "body",
      operation,
      envelope(operation, mutated),
      undefinedField ? "a body field the operation does not define is refused (protocol.md §2)" : undefined,
    )
  })

/** Fields the operation does not define, from one to tens of thousands, at the top or inside. */
const unknownKeys: fc.Arbitrary<FuzzRequest> = fc
  .tuple(
    anyBody,
    fc.nat(),
    // 12,000 keys once in a while: enough to keep testing replies near max_payload without the run
    // being all huge bodies.
    fc.oneof(
      { weight: 4, arbitrary: fc.constant(1) },
      { weight: 3, arbitrary: fc.constant(2) },
      { weight: 3, arbitrary: fc.constant(50) },
      { weight: 2, arbitrary: fc.constant(1_000) },
      { weight: 1, arbitrary: fc.constant(12_000) },
    ),
    fc.constantFrom("k", "unknown_field_", "\u200b", "ключ", "__proto__"),
    fc.constantFrom<Node>(0, "x", null, { a: 1 }),
  )
  .map(([[operation, body], where, count, stem, value]) => {
    const objects = objectPathsOf(body).filter((path) => path.at(-1) !== "fields")
    const at = objects[where % objects.length] ?? []
    const target = getAt(body, at)
    const extended: { [key: string]: Node } = { ...(isPlainObject(target) ? target : {}) }
    for (let index = 0; index < count; index++) extended[`${stem}${index}`] = value
    return new FuzzRequest(
      "unknown-keys",
      operation,
      envelope(operation, setAt(body, at, extended)),
      "a body field the operation does not define is refused (protocol.md §2)",
    )
  })

/** Texts at the edges of the text rules, in the fields that are stored and shown. */
const texts: fc.Arbitrary<FuzzRequest> = fc
  .tuple(
    fc.constantFrom(
      ["template.create", ["name"]],
      ["template.create", ["account"]],
      ["template.create", ["source"]],
      ["template.create", ["providerId"]],
      ["subscription.create", ["template", "name"]],
      ["subscription.create", ["template", "account"]],
    ) as fc.Arbitrary<readonly [string, Path]>,
    fc.constantFrom(...textCases),
  )
  .map(([[operation, path], [text, rule]]) => {
    const body = setAt(validBodies[operation] ?? {}, path, text)
    return new FuzzRequest("text", operation, envelope(operation, body), rule)
  })

/** Durations at and past every boundary, in every duration field of create and update. */
const durations: fc.Arbitrary<FuzzRequest> = fc
  .tuple(
    fc.constantFrom(
      ["threshold-create", "cooldown"],
      ["debt-create", "pollEvery"],
      ["threshold-update", "cooldown"],
      ["debt-update", "pollEvery"],
    ) as fc.Arbitrary<readonly [string, "cooldown" | "pollEvery"]>,
    fc.constantFrom(...durationCases),
  )
  .map(([[shape, field], [text, verdict]]) => {
    const [operation, body]: readonly [string, Node] =
      shape === "threshold-create"
        ? [
            "subscription.create",
            {
              kind: "threshold",
              template: inlineTemplate,
              amount: rub(500),
              threshold: rub(100),
              cooldown: text,
            },
          ]
        : shape === "debt-create"
          ? [
              "subscription.create",
              { kind: "debt", template: inlineTemplate, limit: rub(10_000), pollEvery: text },
            ]
          : shape === "threshold-update"
            ? [
                "subscription.update",
                { subscriptionId: new Ref("threshold"), expectedVersion: 1, cooldown: text },
              ]
            : [
                "subscription.update",
                { subscriptionId: new Ref("debt"), expectedVersion: 1, pollEvery: text },
              ]
    const rule =
      verdict === "syntax"
        ? "a duration must be ISO 8601"
        : verdict === "huge"
          ? `a ${field} longer than a century is out of range`
          : verdict === "tiny" && field === "pollEvery"
            ? "a pollEvery under a second is out of range"
            : undefined
    return new FuzzRequest("duration", `${operation} ${field}`, envelope(operation, body), rule)
  })

/** Requests of exactly, just under and just over the 256 KiB limit, padded in several places. */
const sizes: fc.Arbitrary<FuzzRequest> = fc
  .tuple(
    fc.constantFrom(LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 4_096, 600 * 1024),
    fc.constantFrom("body name", "envelope extra", "unknown body field"),
    fc.constantFrom("x", "ж"),
  )
  .map(([size, where, unit]) => {
    const ids: Ids = {
      requestId: "r".repeat(40),
      template: UUID_A,
      scheduled: UUID_A,
      threshold: UUID_A,
      debt: UUID_A,
      otherClientSubscription: UUID_A,
      unknownUuid: UUID_A,
    }
    const padded = (padding: string): Node =>
      where === "body name"
        ? envelope("template.create", { ...inlineTemplate, name: padding })
        : where === "envelope extra"
          ? envelope("template.create", inlineTemplate, { extra: padding })
          : envelope("template.create", { ...inlineTemplate, padding })
    // Request ids the session hands out are 40 characters, so the size is exact.
    const empty = Buffer.byteLength(toJson(padded(""), ids))
    const units = Math.max(0, Math.floor((size - empty) / Buffer.byteLength(unit)))
    const message = padded(unit.repeat(units))
    const actual = Buffer.byteLength(toJson(message, ids))
    return new FuzzRequest(
      "size",
      `template.create ${actual} bytes`,
      message,
      actual > LIMIT
        ? "a request over 256 KiB is refused"
        : where === "envelope extra"
          ? undefined
          : "an over-long name or an undefined body field is refused",
    )
  })

/** Bytes that are not UTF-8 JSON: invalid sequences spliced into a valid request, binary, broken JSON. */
const invalidBytes: fc.Arbitrary<FuzzRequest> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom(
        [0xff],
        [0xc0, 0xaf],
        [0xed, 0xa0, 0x80],
        [0xf4, 0x90, 0x80, 0x80],
        [0xe2, 0x82],
        [0x80],
        [0xfe, 0xfe],
      ),
      fc.nat(),
    )
    .map(([bad, where]) => {
      const text = JSON.stringify({
        v: 3,
        requestId: `bytes-${randomUUID()}`,
        channel: "mobile",
        clientId: "fuzz-1",
        sentAt: "2026-12-01T10:00:00+03:00",
        operation: "template.create",
        body: { ...inlineTemplate, name: "Rent@@" },
      })
      const encoded = new TextEncoder().encode(text)
      // Inside the name (a string), or anywhere in the text.
      const at = where % 2 === 0 ? text.indexOf("@@") : (where >> 1) % encoded.length
      const bytes = new Uint8Array([...encoded.slice(0, at), ...bad, ...encoded.slice(at)])
      return new FuzzRequest("bytes", "template.create", bytes, "a request that is not UTF-8 is refused")
    }),
  fc.uint8Array({ minLength: 0, maxLength: 300 }).map((bytes) => new FuzzRequest("bytes", "(binary)", bytes)),
  fc
    .constantFrom("{", '{"v":3,', "[]", "null", "0", '"x"', "\ufeff{}", "{}", '{"v":3}', '{"body":{}}')
    .map(
      (text) =>
        new FuzzRequest("bytes", "(not a request)", new TextEncoder().encode(text), "not a request envelope"),
    ),
)

/** The families, each its own property so each defect is reported on its own. */
export const families: Readonly<Record<string, fc.Arbitrary<FuzzRequest>>> = {
  envelope: envelopes,
  body: bodies,
  "unknown-keys": unknownKeys,
  text: texts,
  duration: durations,
  size: sizes,
  bytes: invalidBytes,
}

/**
 * The smallest request known to break each defect the suite was written to find, run first in
 * every seeded run (fast-check `examples`), so `npm test` exercises them whatever the seed draws.
 */
export const knownCases: Readonly<Record<string, ReadonlyArray<FuzzRequest>>> = {
  "unknown-keys": [
    (() => {
      const body: { [key: string]: Node } = { ...inlineTemplate }
      for (let index = 0; index < 12_000; index++) body[`k${index}`] = 0
      return new FuzzRequest(
        "unknown-keys",
        "template.create",
        envelope("template.create", body),
        "a body field the operation does not define is refused (protocol.md §2)",
      )
    })(),
  ],
  duration: [
    new FuzzRequest(
      "duration",
      "subscription.create cooldown",
      envelope("subscription.create", {
        kind: "threshold",
        template: inlineTemplate,
        amount: rub(500),
        threshold: rub(100),
        cooldown: "P14800000W",
      }),
      "a cooldown longer than a century is out of range",
    ),
    new FuzzRequest(
      "duration",
      "subscription.create pollEvery",
      envelope("subscription.create", {
        kind: "debt",
        template: inlineTemplate,
        limit: rub(10_000),
        pollEvery: "PT0.001S",
      }),
      "a pollEvery under a second is out of range",
    ),
  ],
  text: [
    new FuzzRequest(
      "text",
      "template.create",
      envelope("template.create", { ...inlineTemplate, name: "\u200b" }),
      "text made only of zero-width characters is refused",
    ),
  ],
}

// ---------------------------------------------------------------------------------------------
// The session: a channel's view of a running engine, and the invariants

/** What the session needs from the world around the engine. */
export interface FuzzTarget {
  readonly connection: NatsConnection
  readonly jsm: JetStreamManager
  readonly db: Kysely<Tables>
  readonly rpPrefix: string
  /** Streams a request's effects are published to. */
  readonly streams: ReadonlyArray<string>
  /** Replaces an engine that stopped answering, so the run goes on. */
  readonly restartEngine: () => Promise<void>
  /** Completes once the engine has published everything it committed and its consumers caught up. */
  readonly settled: () => Promise<void>
}

export interface Violation {
  readonly invariant: string
  readonly detail: string
}

export interface Outcome {
  /** `ok`, an error code, `no reply`, or `malformed`. */
  readonly code: string
  readonly replyBytes: number
  readonly violations: ReadonlyArray<Violation>
  readonly sent: Uint8Array
}

/** Tables a channel request can write to (not leases, heartbeats or the clock, which move by themselves). */
const WRITTEN_TABLES = [
  "templates",
  "subscriptions",
  "payments",
  "decisions",
  "outbox",
  "inbox",
  "requests",
  "debt_queries",
  "client_spend",
  "debt_bills",
  "engine_settings",
  "audit_log",
] as const

/** What no reply may show a channel: stack frames, source positions, SQL and driver messages. */
export const leakPatterns: ReadonlyArray<RegExp> = [
  /\n\s+at /,
  / {4}at /,
  /\.(ts|js|mjs):\d+/,
  /node_modules/,
  /\bSELECT\b/,
  /\bINSERT INTO\b/,
  /\bUPDATE \w+ SET\b/,
  /\bDELETE FROM\b/,
  /\brelation "/,
  /\bduplicate key\b/,
  /violates .* constraint/,
  /\b(RangeError|TypeError|ReferenceError|SyntaxError: Unexpected end)\b/,
  /Maximum call stack/,
  /\bpg_/,
]

const decodeReply = Schema.decodeUnknownOption(Schema.fromJsonString(ReplyEnvelope))
const decoder = new TextDecoder()

/** Shows bytes in a report: all of a short request, both ends of a long one. */
export const preview = (bytes: Uint8Array, max = 1_500): string => {
  const text = decoder.decode(bytes)
  if (text.length <= max) return visible(JSON.stringify(text))
  return `${visible(JSON.stringify(text.slice(0, max - 300)))} … ${visible(JSON.stringify(text.slice(-200)))} (${bytes.length} bytes)`
}

/** Counts of every outcome and invariant failure, for the summary. */
export class Tally {
  requests = 0
  /** Every message sent, follow-ups and known-good probes included. */
  messages = 0
  readonly families = new Map<string, number>()
  readonly codes = new Map<string, number>()
  readonly failures = new Map<string, { count: number; example: string; exampleBytes: number }>()
  maxReplyBytes = 0
  engineRestarts = 0

  add(outcome: Outcome, request: FuzzRequest): void {
    this.requests++
    this.families.set(request.family, (this.families.get(request.family) ?? 0) + 1)
    this.codes.set(outcome.code, (this.codes.get(outcome.code) ?? 0) + 1)
    this.maxReplyBytes = Math.max(this.maxReplyBytes, outcome.replyBytes)
    for (const violation of outcome.violations) {
      const key = `${violation.invariant} [${request.family}]`
      const known = this.failures.get(key)
      const example = `${request.summary}\n      ${violation.detail}\n      sent: ${preview(outcome.sent, 400)}`
      // The smallest request seen for each failure is the one worth reading.
      if (known === undefined || outcome.sent.length < known.exampleBytes)
        this.failures.set(key, { count: (known?.count ?? 0) + 1, example, exampleBytes: outcome.sent.length })
      else known.count++
    }
  }
}

/** A channel that sends fuzz requests one at a time and checks every invariant on each. */
export class FuzzSession {
  private readonly token = randomBytes(4).toString("hex")
  private readonly inbox: Subscription
  private readonly replies = new Map<string, Array<Msg>>()
  private readonly waiting = new Map<string, (message: Msg) => void>()
  private sequence = 0
  /** The footprint after the last refused request: nothing but reads ran since, so it still holds. */
  private lastFootprint: string | undefined
  readonly tally = new Tally()
  private ids!: Omit<Ids, "requestId">

  private constructor(
    readonly target: FuzzTarget,
    readonly timeoutMs: number,
  ) {
    this.inbox = target.connection.subscribe(`_INBOX.fuzz${this.token}.*`, {
      callback: (error, message) => {
        if (error !== null) return
        const key = message.subject
        const list = this.replies.get(key) ?? []
        list.push(message)
        this.replies.set(key, list)
        this.waiting.get(key)?.(message)
      },
    })
  }

  /** Opens a session and seeds what the requests refer to: templates and subscriptions of two clients. */
  static async open(target: FuzzTarget, timeoutMs = 3_000): Promise<FuzzSession> {
    const session = new FuzzSession(target, timeoutMs)
    await target.connection.flush()
    await session.seed()
    return session
  }

  async close(): Promise<void> {
    this.inbox.unsubscribe()
  }

  /** The max_payload the server announced: no message, reply included, can be larger. */
  get maxPayload(): number {
    return this.target.connection.info?.max_payload ?? 1024 * 1024
  }

  private nextRequestId(): string {
    this.sequence++
    // Always 40 characters, so the size family's requests have the size they were built for.
    return `fuzz-${this.token}-${String(this.sequence).padStart(26, "0")}`.slice(0, 40)
  }

  private resolve(requestId: string): Ids {
    return { ...this.ids, requestId }
  }

  /** Sends raw bytes and waits for the first reply; `undefined` when none came in time. */
  private async exchange(bytes: Uint8Array): Promise<{ reply: Msg | undefined; key: string }> {
    const key = `_INBOX.fuzz${this.token}.${++this.sequence}`
    const arrived = new Promise<Msg | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), this.timeoutMs)
      this.waiting.set(key, (message) => {
        clearTimeout(timer)
        resolve(message)
      })
    })
    this.target.connection.publish(`${this.target.rpPrefix}.v3.mobile`, bytes, { reply: key })
    this.tally.messages++
    const reply = await arrived
    this.waiting.delete(key)
    return { reply, key }
  }

  /** A plain request from the seeded client, decoded; throws when the engine does not answer ok. */
  async ok(operation: string, body: Node, clientId = "fuzz-1"): Promise<Record<string, unknown>> {
    const reply = await this.plain(operation, body, clientId)
    if (reply === undefined || reply.status !== "ok")
      throw new Error(`${operation} was not answered ok: ${JSON.stringify(reply)}`)
    return reply.result as Record<string, unknown>
  }

  private async plain(operation: string, body: Node, clientId = "fuzz-1") {
    // While seeding there are no ids yet, and the seeding bodies refer to none.
    const ids = { ...this.ids, requestId: this.nextRequestId() } as Ids
    const message = envelope(operation, body, { clientId, sentAt: new Date().toISOString() })
    const text = toJson(message, ids)
    const { reply } = await this.exchange(new TextEncoder().encode(text))
    if (reply === undefined || reply.headers?.hasError === true) return undefined
    const decoded = decodeReply(reply.string())
    return decoded._tag === "Some" ? decoded.value : undefined
  }

  private async seed(): Promise<void> {
    const subscriptionOf = (result: Record<string, unknown>) =>
      (result.subscription as { subscriptionId: string }).subscriptionId
    const template = await this.ok("template.create", inlineTemplate)
    const scheduled = await this.ok("subscription.create", validBodies["subscription.create"] ?? {})
    const threshold = await this.ok("subscription.create", extraBodies[0]?.[1] ?? {})
    const debt = await this.ok("subscription.create", extraBodies[1]?.[1] ?? {})
    const other = await this.ok("subscription.create", validBodies["subscription.create"] ?? {}, "fuzz-2")
    this.ids = {
      template: (template.template as { templateId: string }).templateId,
      scheduled: subscriptionOf(scheduled),
      threshold: subscriptionOf(threshold),
      debt: subscriptionOf(debt),
      otherClientSubscription: subscriptionOf(other),
      unknownUuid: randomUUID(),
    }
  }

  /** The operations the engine says it serves (from its UNKNOWN_OPERATION reply). */
  async servedOperations(): Promise<Array<string>> {
    const reply = await this.plain("no.such.operation", {})
    const message = reply?.status === "error" ? reply.error.message : ""
    return Object.keys(validBodies).filter((operation) => message.includes(operation))
  }

  /** True when a known-good read is answered ok. */
  async answering(): Promise<boolean> {
    const reply = await this.plain("template.list", { limit: 1 })
    return reply?.status === "ok"
  }

  /** A fingerprint of everything a request could have written: rows (count, newest xmin) and stream positions. */
  private async footprint(): Promise<string> {
    const parts = WRITTEN_TABLES.map(
      (table) =>
        sql`SELECT ${table} AS t, count(*)::text AS n, coalesce(max(xmin::text::bigint), 0)::text AS x FROM ${sql.table(table)}`,
    )
    const { rows } = await sql<{
      t: string
      n: string
      x: string
    }>`${sql.join(parts, sql` UNION ALL `)}`.execute(this.target.db)
    const streams = await Promise.all(
      this.target.streams.map(async (stream) => (await this.target.jsm.streams.info(stream)).state.last_seq),
    )
    return `${rows.map((row) => `${row.t}:${row.n}/${row.x}`).join(" ")} streams:${streams.join(",")}`
  }

  /**
   * A footprint taken once the engine has settled, twice in a row alike: after an accepted request
   * or an engine restart the engine may still be finishing work of its own (a restarted engine
   * taking its partitions back wakes what is due), which must not be charged to the next request.
   */
  private async quietFootprint(): Promise<string> {
    await this.target.settled()
    let previous = await this.footprint()
    for (let attempt = 0; attempt < 100; attempt++) {
      await this.target.settled()
      const current = await this.footprint()
      if (current === previous) return current
      previous = current
    }
    return previous
  }

  /** Sends `request` and checks every invariant; a stopped engine is restarted so the run goes on. */
  async check(request: FuzzRequest): Promise<Outcome> {
    const violations: Array<Violation> = []
    const requestId = this.nextRequestId()
    const sent = request.bytes(this.resolve(requestId))
    if (sent.length > this.maxPayload) {
      // The client refuses to publish it and the server would too: nothing reaches the engine.
      const outcome: Outcome = { code: "not sent (over max_payload)", replyBytes: 0, violations: [], sent }
      this.tally.add(outcome, request)
      return outcome
    }
    const before = this.lastFootprint ?? (await this.quietFootprint())
    this.lastFootprint = undefined
    const { reply, key } = await this.exchange(sent)
    let code = "no reply"
    let replyBytes = 0
    let accepted: Record<string, unknown> | undefined
    if (reply === undefined) {
      violations.push({
        invariant: "one-reply",
        detail: `no reply within ${this.timeoutMs} ms (a reply over max_payload ${this.maxPayload} cannot be sent)`,
      })
    } else if (reply.headers?.hasError === true) {
      code = `nats ${reply.headers.code}`
      violations.push({
        invariant: "one-reply",
        detail: `no engine answered: ${reply.headers.code} ${reply.headers.description}`,
      })
    } else {
      replyBytes = reply.data.length
      const text = reply.string()
      const decoded = decodeReply(text)
      if (replyBytes > this.maxPayload)
        violations.push({
          invariant: "one-reply",
          detail: `reply of ${replyBytes} bytes is over max_payload ${this.maxPayload}`,
        })
      if (decoded._tag === "None") {
        code = "malformed"
        violations.push({
          invariant: "one-reply",
          detail: `reply is not a V3 reply envelope: ${text.slice(0, 300)}`,
        })
      } else {
        const envelopeOk = decoded.value
        code = envelopeOk.status === "ok" ? "ok" : envelopeOk.error.code
        if (envelopeOk.status === "error") {
          for (const pattern of leakPatterns)
            if (pattern.test(text))
              violations.push({
                invariant: "no-leak",
                detail: `error reply matches ${pattern}: ${text.slice(0, 400)}`,
              })
          if (envelopeOk.error.code === "INTERNAL")
            violations.push({
              invariant: "no-internal",
              detail: `answered INTERNAL: ${envelopeOk.error.message.slice(0, 300)}`,
            })
        } else {
          accepted = envelopeOk.result as Record<string, unknown>
          if (request.mustRefuse !== undefined)
            violations.push({ invariant: "documented-rule", detail: `accepted, but ${request.mustRefuse}` })
        }
      }
    }
    if (accepted === undefined) {
      const after = await this.footprint()
      if (after === before) this.lastFootprint = after
      else
        violations.push({
          invariant: "refusal-writes-nothing",
          detail: `refused (${code}) but wrote:\n        before ${before}\n        after  ${after}`,
        })
    } else {
      const json = parsed(sent)
      if (json.operation === "subscription.create" || json.operation === "template.create")
        violations.push(
          ...(await this.followUp(accepted, typeof json.clientId === "string" ? json.clientId : "fuzz-1")),
        )
    }
    if (!(await this.answering())) {
      violations.push({
        invariant: "keeps-answering",
        detail: "a known-good template.list was not answered ok after this request",
      })
      await this.target.restartEngine()
      this.tally.engineRestarts++
      this.lastFootprint = undefined
    }
    const count = this.replies.get(key)?.length ?? 0
    if (count > 1) violations.push({ invariant: "one-reply", detail: `${count} replies to one request` })
    this.replies.delete(key)
    const outcome: Outcome = { code, replyBytes, violations, sent }
    this.tally.add(outcome, request)
    return outcome
  }

  /** What an accepted create made must then work: reads, preview, pause, resume, cancel. */
  private async followUp(result: Record<string, unknown>, clientId: string): Promise<Array<Violation>> {
    const violations: Array<Violation> = []
    const step = async (operation: string, body: Node) => {
      const reply = await this.plain(operation, body, clientId)
      if (reply?.status !== "ok")
        violations.push({
          invariant: "follow-up",
          detail: `${operation} on what was accepted answered ${reply === undefined ? "nothing" : `${reply.error.code} ${reply.error.message.slice(0, 200)}`}`,
        })
      return reply?.status === "ok" ? (reply.result as Record<string, unknown>) : undefined
    }
    const subscriptionId = (result.subscription as { subscriptionId?: string } | undefined)?.subscriptionId
    const templateId = (result.template as { templateId?: string } | undefined)?.templateId
    if (subscriptionId !== undefined) {
      // A repeated request id returns the first reply: what it created may have been cancelled since.
      const current = await step("subscription.get", { subscriptionId })
      const status = (current?.subscription as { status?: string } | undefined)?.status
      if (current === undefined || status === "cancelled") return violations
      await step("subscription.list", { limit: 200, includeHidden: true })
      await step("subscription.history", { subscriptionId, limit: 5 })
      await step("subscription.preview", { subscriptionId, count: 3 })
      if (status === "active") {
        await step("subscription.pause", { subscriptionId })
        await step("subscription.resume", { subscriptionId })
      }
      await step("subscription.cancel", { subscriptionId })
    } else if (templateId !== undefined) await step("template.get", { templateId })
    return violations
  }
}

const parsed = (bytes: Uint8Array): { operation?: unknown; clientId?: unknown } => {
  try {
    const json = JSON.parse(decoder.decode(bytes)) as unknown
    return typeof json === "object" && json !== null ? json : {}
  } catch {
    return {}
  }
}

/** The error a seeded property throws: every violation, and the exact bytes to send again. */
export const describeFailure = (request: FuzzRequest, outcome: Outcome): string =>
  [
    `${outcome.violations.length} invariant(s) broken by ${request.summary}`,
    ...outcome.violations.map((violation) => `  - ${violation.invariant}: ${violation.detail}`),
    `  sent (${outcome.sent.length} bytes) on rp.v3.mobile: ${preview(outcome.sent)}`,
  ].join("\n")

/** A fast-check property over one family: fails with the violations of the first bad request. */
export const familyProperty = (session: FuzzSession, family: string) =>
  fc.asyncProperty(families[family] ?? fc.constant(new FuzzRequest(family, "none", {})), async (request) => {
    const outcome = await session.check(request)
    if (outcome.violations.length > 0) throw new Error(describeFailure(request, outcome))
  })

/** A world with a running engine (clock off: nothing moves but requests) and a session on it. */
export const openFuzzWorld = async (
  label = "fuzz",
  timeoutMs?: number,
): Promise<{ world: World; session: FuzzSession }> => {
  const world = await World.create({}, label)
  let engine = await world.startEngine()
  const { streams } = world.topology
  const session = await FuzzSession.open(
    {
      connection: world.connection,
      jsm: world.jsm,
      db: world.db,
      rpPrefix: world.settings.naming.rpPrefix,
      streams: [streams.events, streams.hubPayments, streams.providers],
      restartEngine: async () => {
        await engine.stop().catch(() => undefined)
        engine = await world.startEngine()
      },
      settled: () => world.settled(),
    },
    timeoutMs,
  )
  return { world, session }
}
