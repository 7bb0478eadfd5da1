/**
 * A fake channel (mobile bank, ATM, cashier desk...): sends V3 requests on
 * `rp.v3.<channel>` over NATS request-reply, exactly as a real channel does,
 * and decodes the replies with the protocol's own reply schema, so a test
 * also proves that every reply the engine sends is well-formed. A channel
 * given a key signs every request's exact bytes in the `Rp-Signature` header.
 * Like a real channel, it sends a request refused as BUSY again, the same
 * bytes (so the same requestId), after the reply's `retryAfterMs`.
 */
import { type KeyObject, randomUUID } from "node:crypto"
import { headers, type NatsConnection } from "@nats-io/transport-node"
import { Schema } from "effect"
import { privateKeyFromSeed, SIGNATURE_HEADER, signatureHeaderFor } from "../src/protocol/ChannelKeys.ts"
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
  /** The envelope's `sentAt`; defaults to now. */
  readonly sentAt?: string
  /** The `Rp-Signature` header instead of this channel's own signature; null sends none. */
  readonly signature?: string | null
  /** false: return a BUSY reply instead of retrying it (default true). */
  readonly retryBusy?: boolean
}

/** How raw bytes are sent. */
export interface SendOptions {
  /** The `Rp-Signature` header instead of this channel's own signature; null sends none. */
  readonly signature?: string | null
  /** false: return a BUSY reply instead of retrying it (default true). */
  readonly retryBusy?: boolean
}

/** A request still refused as BUSY this long after it was first sent is given up on (its BUSY reply returned). */
const BUSY_RETRY_BUDGET_MS = 60_000

/** A channel talking to the engine. */
export class FakeChannel {
  constructor(
    readonly connection: NatsConnection,
    readonly rpPrefix: string,
    readonly channel: string,
    readonly timeoutMs = 10_000,
    /** The key this channel signs with; none: it does not sign. */
    readonly signingKey?: KeyObject,
  ) {}

  /** The same channel signing with `key` (a private KeyObject or an nkey seed `SU…`). */
  signedWith(key: KeyObject | string): FakeChannel {
    const privateKey = typeof key === "string" ? privateKeyFromSeed(key) : key
    return new FakeChannel(this.connection, this.rpPrefix, this.channel, this.timeoutMs, privateKey)
  }

  /** Sends one operation and returns the engine's reply. */
  async request(operation: string, body: unknown, options: RequestOptions): Promise<Reply> {
    const envelope = {
      v: 3,
      requestId: options.requestId ?? `${this.channel}-${randomUUID()}`,
      channel: options.channel ?? this.channel,
      terminal: options.terminal ?? `${this.channel}-terminal-1`,
      clientId: options.clientId,
      sentAt: options.sentAt ?? new Date().toISOString(),
      operation,
      body,
    }
    return this.send(JSON.stringify(envelope), {
      ...(options.signature === undefined ? {} : { signature: options.signature }),
      ...(options.retryBusy === undefined ? {} : { retryBusy: options.retryBusy }),
    })
  }

  /** Sends raw bytes (for malformed requests), signed if this channel signs, and returns the engine's reply. */
  async send(payload: string | Uint8Array, options: SendOptions = {}): Promise<Reply> {
    const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload
    const signature =
      options.signature !== undefined
        ? options.signature
        : this.signingKey === undefined
          ? null
          : signatureHeaderFor(bytes, this.signingKey)
    const requestHeaders = signature === null ? undefined : headers()
    if (requestHeaders !== undefined && signature !== null) requestHeaders.set(SIGNATURE_HEADER, signature)
    const giveUpAt = Date.now() + BUSY_RETRY_BUDGET_MS
    for (;;) {
      const message = await this.connection.request(`${this.rpPrefix}.v3.${this.channel}`, bytes, {
        timeout: this.timeoutMs,
        ...(requestHeaders === undefined ? {} : { headers: requestHeaders }),
      })
      const reply = decodeReply(message.string())
      const retryAfterMs =
        reply.status === "error" && reply.error.code === "BUSY" ? reply.error.retryAfterMs : undefined
      if (retryAfterMs === undefined || options.retryBusy === false || Date.now() + retryAfterMs > giveUpAt)
        return reply
      await new Promise((resolve) => setTimeout(resolve, retryAfterMs))
    }
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
