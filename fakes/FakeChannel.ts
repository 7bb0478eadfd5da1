/**
 * A fake channel (mobile bank, ATM, cashier desk...): sends V3 requests on
 * `rp.v3.<channel>` over NATS request-reply, exactly as a real channel does,
 * and decodes the replies with the protocol's own reply schema, so a test
 * also proves that every reply the engine sends is well-formed.
 */
import { randomUUID } from "node:crypto"
import type { NatsConnection } from "@nats-io/transport-node"
import { Schema } from "effect"
import { ReplyEnvelope } from "../src/protocol/Envelope.ts"

const decodeReply = Schema.decodeUnknownSync(Schema.fromJsonString(ReplyEnvelope))

/** A decoded reply. */
export type Reply = typeof ReplyEnvelope.Type

/** Per-request options. */
export interface RequestOptions {
  readonly clientId: string
  /** Defaults to a fresh id; pass one to repeat a request. */
  readonly requestId?: string
  readonly terminal?: string
  /** The envelope's channel field; defaults to the channel this fake speaks for. */
  readonly channel?: string
}

/** A channel talking to the engine. */
export class FakeChannel {
  constructor(
    readonly connection: NatsConnection,
    readonly rpPrefix: string,
    readonly channel: string,
    readonly timeoutMs = 10_000,
  ) {}

  /** Sends one operation and returns the engine's reply. */
  async request(operation: string, body: unknown, options: RequestOptions): Promise<Reply> {
    const envelope = {
      v: 3,
      requestId: options.requestId ?? `${this.channel}-${randomUUID()}`,
      channel: options.channel ?? this.channel,
      terminal: options.terminal ?? `${this.channel}-terminal-1`,
      clientId: options.clientId,
      sentAt: new Date().toISOString(),
      operation,
      body,
    }
    return this.send(JSON.stringify(envelope))
  }

  /** Sends raw bytes (for malformed requests) and returns the engine's reply. */
  async send(payload: string | Uint8Array): Promise<Reply> {
    const message = await this.connection.request(`${this.rpPrefix}.v3.${this.channel}`, payload, {
      timeout: this.timeoutMs,
    })
    return decodeReply(message.string())
  }

  /** Sends an operation and returns its result, failing loudly if the engine refused it. */
  async ok<T = Record<string, unknown>>(
    operation: string,
    body: unknown,
    options: RequestOptions,
  ): Promise<T> {
    const reply = await this.request(operation, body, options)
    if (reply.status !== "ok") {
      throw new Error(`${operation} was refused: ${reply.error.code} ${reply.error.message}`)
    }
    return reply.result as T
  }
}
