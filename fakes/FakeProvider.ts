/**
 * A fake service provider (a mobile operator, a utility): the party outside
 * the engine that reports balances and answers debt queries.
 *
 * It talks to the engine only over NATS, as a real provider would: it
 * publishes balance readings to `provider.<id>.threshold.event`, and answers
 * the engine's `provider.<id>.debt.query` messages, read from the
 * RP_PROVIDERS stream with its own durable consumer, with a
 * `provider.<id>.debt.response` carrying the bills scripted for the account
 * (or an error, or nothing at all).
 */
import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import type { Money } from "../src/domain/Money.ts"
import type { Naming } from "../src/EngineConfig.ts"
import type { Bill, DebtQuery } from "../src/streams/Messages.ts"
import { makeTopology } from "../src/streams/Topology.ts"

/**
 * What the provider says when asked about an account. `account` makes it misbehave: the answer names
 * that account instead of the one asked about.
 */
export type DebtAnswer =
  | { readonly debts: ReadonlyArray<Bill>; readonly account?: string }
  | { readonly error: { readonly code: string; readonly message: string }; readonly account?: string }
  /** No answer at all: the engine's query times out. */
  | "silent"

/** How to start a fake provider. */
export interface FakeProviderOptions {
  readonly natsUrl: string
  readonly naming: Naming
  readonly providerId: string
  /** The answer for an account; default: no debts. */
  readonly answer?: (query: DebtQuery) => DebtAnswer
}

/** A running fake provider. */
export class FakeProvider {
  /** Every debt query received, in arrival order. */
  readonly queries: Array<DebtQuery> = []
  private answerFor: (query: DebtQuery) => DebtAnswer
  private messages: ConsumerMessages | undefined
  private readonly waiters = new Set<{ count: number; resolve: () => void }>()
  stopped = false

  private constructor(
    private readonly connection: NatsConnection,
    private readonly js: JetStreamClient,
    readonly providerId: string,
    private readonly subjectOf: (topic: string) => string,
    answer: (query: DebtQuery) => DebtAnswer,
  ) {
    this.answerFor = answer
  }

  static async start(options: FakeProviderOptions): Promise<FakeProvider> {
    const connection = await connect({
      servers: options.natsUrl,
      name: `fake-provider-${options.providerId}`,
    })
    const topology = makeTopology(options.naming)
    const provider = new FakeProvider(
      connection,
      jetstream(connection),
      options.providerId,
      (topic) => topology.subjects.toProvider(options.providerId, topic),
      options.answer ?? (() => ({ debts: [] })),
    )
    await provider.consumeQueries(await jetstreamManager(connection), topology.streams.providers)
    return provider
  }

  /** Its durable consumer of debt queries (a query is acknowledged once answered). */
  get consumerName(): string {
    return `fake-provider-${this.providerId}`
  }

  private async consumeQueries(jsm: JetStreamManager, stream: string): Promise<void> {
    const durable = this.consumerName
    await jsm.consumers.add(stream, {
      durable_name: durable,
      filter_subject: this.subjectOf("debt.query"),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
    })
    const consumer = await this.js.consumers.get(stream, durable)
    this.messages = await consumer.consume({
      callback: (message) => {
        const query = message.json<DebtQuery>()
        this.queries.push(query)
        for (const waiter of [...this.waiters]) {
          if (this.queries.length >= waiter.count) {
            this.waiters.delete(waiter)
            waiter.resolve()
          }
        }
        const answer = this.answerFor(query)
        const sent = answer === "silent" ? Promise.resolve() : this.respond(query, answer)
        void sent.then(
          () => message.ack(),
          () => message.nak(),
        )
      },
    })
  }

  /** Changes how the provider answers from now on. */
  setAnswer(answer: (query: DebtQuery) => DebtAnswer): void {
    this.answerFor = answer
  }

  /** Resolves once at least `count` queries have arrived; rejects after `timeoutMs`. */
  waitForQueries(count: number, timeoutMs = 10_000): Promise<ReadonlyArray<DebtQuery>> {
    if (this.queries.length >= count) return Promise.resolve(this.queries.slice())
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        reject(
          new Error(
            `fake provider: expected ${count} debt queries within ${timeoutMs} ms, got ${this.queries.length}`,
          ),
        )
      }, timeoutMs)
      const waiter = {
        count,
        resolve: () => {
          clearTimeout(timer)
          resolve(this.queries.slice())
        },
      }
      this.waiters.add(waiter)
    })
  }

  /**
   * Answers a query (also usable to send a late or duplicate answer by hand, or, with another
   * provider's `queryId`, an answer to a query this provider was never sent).
   */
  async respond(
    query: Pick<DebtQuery, "queryId" | "account">,
    answer: Exclude<DebtAnswer, "silent">,
    msgId?: string,
  ) {
    const body = {
      queryId: query.queryId,
      providerId: this.providerId,
      account: query.account,
      ...answer,
      at: new Date().toISOString(),
    }
    await this.js.publish(this.subjectOf("debt.response"), JSON.stringify(body), {
      msgID: msgId ?? `response:${query.queryId}`,
    })
  }

  /**
   * Reports an account's balance. The message id defaults to one derived from the event id (the
   * stream then drops a repeated publish); pass another to make the engine itself see a repeat.
   */
  async reportBalance(
    reading: {
      readonly eventId: string
      readonly account: string
      readonly balance: Money
      readonly at: string
    },
    msgId = `event:${reading.eventId}`,
  ): Promise<void> {
    await this.js.publish(
      this.subjectOf("threshold.event"),
      JSON.stringify({ ...reading, providerId: this.providerId }),
      { msgID: msgId },
    )
  }

  /** Publishes raw bytes on one of this provider's subjects (bad input tests). */
  async publishRaw(topic: string, data: string): Promise<void> {
    await this.js.publish(this.subjectOf(topic), data)
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.messages?.close()
    await this.connection.drain()
  }
}
