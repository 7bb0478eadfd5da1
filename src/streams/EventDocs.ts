/**
 * docs/events.md, rendered from the Schemas in Events.ts: each type's JSON
 * Schema (`Schema.toJsonSchemaDocument`) is walked into a table of fields, so
 * the reference says exactly what the decoder accepts. `npm run docs:events`
 * writes it; a test renders it again and compares with the committed file.
 */
import { Schema, SchemaAST } from "effect"
import { eventDataSchemas, notificationDataSchemas, OTHER_FIELDS, sharedTypes } from "./Events.ts"

/** A JSON Schema node, as the compiler emits it. */
type Node = { readonly [key: string]: unknown }

const node = (value: unknown): Node => (typeof value === "object" && value !== null ? (value as Node) : {})
const nodes = (value: unknown): ReadonlyArray<Node> => (Array.isArray(value) ? value.map(node) : [])
const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined)

/** The name a `$ref` points at. */
const refName = (ref: unknown): string | undefined => text(ref)?.replace("#/$defs/", "")

/** The Markdown anchor of a shared type's heading. */
const anchor = (name: string): string => name.toLowerCase()

/** A number as the JSON codec describes it: a number, or the strings of the non-finite ones. */
const isNumberCodec = (members: ReadonlyArray<Node>): boolean =>
  members.length === 2 &&
  members.some((member) => member.type === "number") &&
  members.some((member) => Array.isArray(member.enum) && member.enum.includes("Infinity"))

/** The members of `schema` that say what it is (its `allOf` may also hold a description or a rest). */
const shapeOf = (schema: Node): Node => {
  if (schema.$ref !== undefined || schema.type !== undefined || schema.anyOf !== undefined) return schema
  const shaped = nodes(schema.allOf).find((member) => member.$ref !== undefined || member.type !== undefined)
  return shaped ?? schema
}

/** How a field's type reads in the table. */
const typeOf = (schema: Node): string => {
  const shape = shapeOf(schema)
  const ref = refName(shape.$ref)
  if (ref !== undefined) return `[${ref}](#${anchor(ref)})`
  const members = nodes(shape.anyOf)
  if (members.length > 0) return isNumberCodec(members) ? "number" : members.map(typeOf).join(" or ")
  if (Array.isArray(shape.enum)) return shape.enum.map((value) => `\`${JSON.stringify(value)}\``).join(" or ")
  switch (shape.type) {
    case "array":
      return `array of ${typeOf(node(shape.items))}`
    case "object":
      return shape.properties === undefined ? "object (any fields)" : "object"
    case undefined:
      return "any"
    default:
      return String(shape.type)
  }
}

/** A field's own description: on the node, or beside its type in an `allOf`. */
const descriptionOf = (schema: Node): string =>
  text(schema.description) ??
  nodes(schema.allOf)
    .map((member) => text(member.description))
    .find((description) => description !== undefined) ??
  ""

/** The inline object a field holds (itself, or its non-null member), whose fields are listed under it. */
const objectOf = (schema: Node): Node | undefined => {
  const shape = shapeOf(schema)
  if (shape.$ref !== undefined) return undefined
  if (shape.type === "object" && shape.properties !== undefined) return shape
  const objects = nodes(shape.anyOf).filter(
    (member) => member.type === "object" && member.properties !== undefined,
  )
  return objects.length === 1 ? objects[0] : undefined
}

const cell = (value: string): string => value.replaceAll("|", "\\|")

/** The rows of an object's fields, nested objects flattened as `parent.child`. */
const rows = (object: Node, prefix = ""): ReadonlyArray<string> => {
  const required = new Set(Array.isArray(object.required) ? object.required : [])
  const lines: Array<string> = []
  for (const [name, value] of Object.entries(node(object.properties))) {
    const field = node(value)
    lines.push(
      `| \`${prefix}${name}\` | ${cell(typeOf(field))} | ${required.has(name) ? "yes" : "no"} | ${cell(descriptionOf(field))} |`,
    )
    const inner = objectOf(field)
    if (inner !== undefined) lines.push(...rows(inner, `${prefix}${name}.`))
  }
  const others = text(object[OTHER_FIELDS])
  if (others !== undefined) lines.push(`| \`${prefix}…\` | any | no | ${cell(others)} |`)
  return lines
}

const table = (object: Node): ReadonlyArray<string> => [
  "| Field | Type | Required | Description |",
  "| --- | --- | --- | --- |",
  ...rows(object),
]

const jsonSchemaOf = (schema: Schema.Top) =>
  Schema.toJsonSchemaDocument(schema, { includeAnnotationKey: (key) => key === OTHER_FIELDS })

/** Every named type met while rendering, by name: each must come out the same wherever it is used. */
class Definitions {
  readonly byName = new Map<string, Node>()

  add(definitions: Readonly<Record<string, unknown>>): void {
    for (const [name, definition] of Object.entries(definitions)) {
      const known = this.byName.get(name)
      if (known !== undefined && JSON.stringify(known) !== JSON.stringify(definition)) {
        throw new Error(`two different schemas are named ${name}: give each its own identifier`)
      }
      this.byName.set(name, node(definition))
    }
  }
}

/** The section of one event or notification type. */
const section = (heading: string, subject: string, schema: Schema.Top, definitions: Definitions) => {
  const document = jsonSchemaOf(schema)
  definitions.add(document.definitions)
  const root = node(document.schema)
  const lines = [
    `### ${heading}`,
    "",
    `Subject: ${subject}`,
    "",
    `**When:** ${SchemaAST.resolveDescription(schema.ast) ?? ""}`,
    "",
  ]
  const variants = nodes(root.anyOf)
  if (variants.length === 0) return [...lines, ...table(root), ""]
  lines.push(`\`data\` is one of ${variants.length}:`, "")
  for (const variant of variants) {
    lines.push(`#### ${text(variant.title) ?? "Variant"}`, "")
    const description = text(variant.description)
    if (description !== undefined) lines.push(description, "")
    lines.push(...table(variant), "")
  }
  return lines
}

const sharedSection = (schema: Schema.Top, definitions: Definitions): ReadonlyArray<string> => {
  const name = SchemaAST.resolveIdentifier(schema.ast)
  if (name === undefined) throw new Error("a shared type needs an identifier")
  const definition = definitions.byName.get(name)
  if (definition === undefined) return []
  const lines = [`### ${name}`, "", SchemaAST.resolveDescription(schema.ast) ?? "", ""]
  if (definition.properties === undefined) return [...lines, `Type: ${typeOf(definition)}.`, ""]
  return [...lines, ...table(definition), ""]
}

/** The whole of docs/events.md. */
export const renderEventDocs = (): string => {
  const definitions = new Definitions()
  const events = Object.entries(eventDataSchemas).flatMap(([type, schema]) =>
    section(`Event \`${type}\``, `\`rp.event.${type}\``, schema, definitions),
  )
  const notifications = Object.entries(notificationDataSchemas).flatMap(([type, schema]) =>
    section(
      `Notification \`${type}\``,
      `\`rp.notify.<clientId>\`, with \`"type": "${type}"\``,
      schema,
      definitions,
    ),
  )
  const shared = sharedTypes.flatMap((schema) => sharedSection(schema, definitions))
  const contents = [
    ...Object.keys(eventDataSchemas).map((type) => `- [\`${type}\`](#event-${type.replaceAll(".", "")})`),
  ]
  const notificationContents = Object.keys(notificationDataSchemas).map(
    (type) => `- [\`${type}\`](#notification-${type.replaceAll(".", "")})`,
  )
  return [
    "# Events and notifications: the `data` of each type",
    "",
    "<!-- Generated by `npm run docs:events` from src/streams/Events.ts: edit the Schemas there, not this file. -->",
    "",
    "The engine publishes lifecycle and payment events for other hub services on `rp.event.<type>` and",
    "customer notifications on `rp.notify.<clientId>`, both in the `RP_EVENTS` stream. The envelopes",
    "(`eventId`, `type`, `at`, `subscriptionId`, `clientId`, `kind`; `notificationId`, `clientId`, `type`,",
    "`subscriptionId`, `paymentId`, `at`), ids, de-duplication and examples are in",
    "[streams.md §11 and §12](streams.md#11-events-rpeventtype). This page gives the `data` of every type,",
    "generated from the Schemas the engine builds them with (src/streams/Events.ts), which a test decodes",
    "every published payload with.",
    "",
    "Reading the tables: _Required_ `no` means the field may be absent; a type `… or null` means it is",
    "always there but may be null. Nested objects are listed field by field as `parent.child`. A row",
    "`…` stands for further fields whose names vary (a rule's inputs), described in words. A consumer",
    "should ignore fields it does not know: new ones may be added.",
    "",
    "Events:",
    "",
    ...contents,
    "",
    "Notifications:",
    "",
    ...notificationContents,
    "",
    "Shared types: " +
      sharedTypes
        .map((schema) => SchemaAST.resolveIdentifier(schema.ast) ?? "")
        .map((name) => `[${name}](#${anchor(name)})`)
        .join(", ") +
      ".",
    "",
    "## Events (`rp.event.<type>`)",
    "",
    ...events,
    "## Notifications (`rp.notify.<clientId>`)",
    "",
    ...notifications,
    "## Shared types",
    "",
    ...shared,
  ]
    .join("\n")
    .replace(/\n+$/, "\n")
}
