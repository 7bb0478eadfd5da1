/**
 * A fake of the payments hub: the system outside the engine that moves money.
 *
 * It talks to the engine only over NATS, exactly as the real hub would: it
 * consumes `hub.payment.command` from the HUB_PAYMENTS stream with its own
 * durable consumer, publishes `hub.payment.result` with `Nats-Msg-Id`
 * `result:<paymentId>`, and answers `hub.payment.status` requests. Tests use
 * it to script verdicts; the benchmark runs it as its own process.
 *
 * The hub is idempotent on `paymentId`, like the real one: the first command
 * for a payment id gets a verdict from `decide`, and a repeated command gets
 * the same verdict again instead of a fresh decision.
 *
 * It is built to keep up with a 100k burst on a small machine without taking
 * CPU from the engine: commands arrive through a consumer callback (a whole
 * pull batch per pass), results go out through `JetStreamPublisher`, and a
 * bounded number of results await their JetStream ack at any time.
 */
import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream"
import { connect, type NatsConnection, nanos, type Subscription } from "@nats-io/transport-node"
import { Schema } from "effect"
import type { Naming } from "../src/EngineConfig.ts"
import { JetStreamPublisher } from "../src/streams/JetStreamPublisher.ts"
import { PaymentCommand, type PaymentResult } from "../src/streams/Messages.ts"
import { makeTopology } from "../src/streams/Topology.ts"

/** What a result may repeat of its command (a hub that echoes the command it answers). */
export type EchoedCommand = Partial<
  Pick<PaymentResult, "subscriptionId" | "occurrence" | "attempt" | "amount">
>

/** What the hub does with a command: answer with a result, or stay silent (an unknown outcome). */
export type HubVerdict =
  | {
      status: "succeeded" | "failed" | "declined"
      retryable: boolean
      reason?: string
      /** A misbehaving hub: the result repeats these instead of the command's (say, another amount). */
      misreport?: EchoedCommand
    }
  | "silent"

/** How to start a fake hub. */
export interface FakeHubOptions {
  natsUrl: string
  naming: Naming
  /** Durable consumer name on the HUB_PAYMENTS stream; default "fake-hub". */
  consumerName?: string
  /** Its consumer's ack wait (a command taken but not acknowledged comes again after it); default 30 s. */
  ackWaitMs?: number
  /** The verdict for a payment id seen for the first time; default: always succeeded. */
  decide?: (command: PaymentCommand) => HubVerdict
  /** Results repeat their command's subscription, occurrence, attempt and amount; default false (the contract's bare result). */
  echoCommand?: boolean
}

/** A running fake hub. */
export interface FakeHub {
  /** Every command received, in arrival order, redeliveries and duplicates included. */
  readonly commands: ReadonlyArray<PaymentCommand>
  /** How many results this hub has published for commands (not counting `publishResult`). */
  readonly answered: number
  /** Resolves with a snapshot of `commands` once at least `count` have arrived; rejects after `timeoutMs` (default 10 s). */
  waitForCommands(count: number, timeoutMs?: number): Promise<ReadonlyArray<PaymentCommand>>
  /** Changes what the hub says about a payment from now on (status queries and repeated commands). */
  setVerdict(paymentId: string, verdict: HubVerdict): void
  /** Its durable consumer on HUB_PAYMENTS (it acknowledges a command once its result is published). */
  readonly consumerName: string
  /** True once `stop` was called. */
  readonly stopped: boolean
  /** Publishes any result as the hub; without `msgId` the message carries no `Nats-Msg-Id`. */
  publishResult(result: PaymentResult, msgId?: string): Promise<void>
  /** Stops consuming, waits for results in flight and drains the connection; never deletes streams. */
  stop(): Promise<void>
}

const decodeCommand = Schema.decodeUnknownSync(PaymentCommand)

const streamWaitMs = 30_000
const defaultWaitForCommandsMs = 10_000
// Results published but not yet acknowledged by JetStream: enough to keep the
// server busy during a 100k burst, small enough to bound the hub's memory.
const maxResultsInFlight = 2_000
const consumerAckWaitMs = 30_000

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const waitForStream = async (jsm: JetStreamManager, stream: string): Promise<void> => {
  const deadline = Date.now() + streamWaitMs
  let delayMs = 50
  for (;;) {
    try {
      await jsm.streams.info(stream)
      return
    } catch (error) {
      if (Date.now() >= deadline) {
        throw new Error(
          `fake hub: stream ${stream} did not appear within ${streamWaitMs} ms (is the engine running with the same RP_STREAM_PREFIX?): ${String(error)}`,
        )
      }
      await sleep(delayMs)
      delayMs = Math.min(delayMs * 2, 500)
    }
  }
}

const ensureCommandConsumer = async (
  jsm: JetStreamManager,
  stream: string,
  durable: string,
  commandSubject: string,
  ackWaitMs: number,
): Promise<void> => {
  try {
    await jsm.consumers.info(stream, durable)
  } catch {
    await jsm.consumers.add(stream, {
      durable_name: durable,
      filter_subject: commandSubject,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(ackWaitMs),
      max_ack_pending: 20_000,
    })
  }
}

const resultFor = (
  paymentId: string,
  verdict: Exclude<HubVerdict, "silent">,
  echoed: EchoedCommand = {},
): PaymentResult => ({
  paymentId,
  status: verdict.status,
  retryable: verdict.retryable,
  ...(verdict.reason === undefined ? {} : { reason: verdict.reason }),
  ...(verdict.status === "succeeded" ? { hubReference: `hub-${paymentId.slice(0, 8)}` } : {}),
  ...echoed,
  ...verdict.misreport,
  at: new Date().toISOString(),
})

const echoOf = (command: PaymentCommand): EchoedCommand => ({
  subscriptionId: command.subscriptionId,
  occurrence: command.occurrence,
  attempt: command.attempt,
  amount: command.amount,
})

interface CommandWaiter {
  readonly count: number
  readonly resolve: (commands: ReadonlyArray<PaymentCommand>) => void
}

interface PendingAnswer {
  readonly command: PaymentCommand
  readonly verdict: Exclude<HubVerdict, "silent">
  readonly message: JsMsg
}

class RunningFakeHub implements FakeHub {
  readonly commands: Array<PaymentCommand> = []
  answered = 0
  private readonly verdicts = new Map<string, HubVerdict>()
  private readonly waiters = new Set<CommandWaiter>()
  // Commands received and not yet answered; unbounded here, but the consumer's
  // max_ack_pending caps it because a command is acked only once answered.
  private queue: Array<PendingAnswer> = []
  private queueHead = 0
  private inFlight = 0
  private idle: (() => void) | undefined
  private messages: ConsumerMessages | undefined
  private statusSubscription: Subscription | undefined
  private stopping: Promise<void> | undefined

  constructor(
    private readonly connection: NatsConnection,
    private readonly publisher: JetStreamPublisher,
    private readonly resultSubject: string,
    private readonly decide: (command: PaymentCommand) => HubVerdict,
    readonly consumerName: string,
    private readonly echoCommand: boolean,
  ) {}

  /** What results repeat of each command, when the hub echoes commands. */
  private readonly echoes = new Map<string, EchoedCommand>()

  start(messages: ConsumerMessages, statusSubject: string): void {
    this.messages = messages
    this.statusSubscription = this.connection.subscribe(statusSubject, {
      callback: (error, message) => {
        if (error !== null) return
        message.respond(JSON.stringify(this.statusReply(message.string())))
      },
    })
  }

  waitForCommands(
    count: number,
    timeoutMs = defaultWaitForCommandsMs,
  ): Promise<ReadonlyArray<PaymentCommand>> {
    if (this.commands.length >= count) return Promise.resolve(this.commands.slice())
    return new Promise((resolve, reject) => {
      const waiter: CommandWaiter = {
        count,
        resolve: (commands) => {
          clearTimeout(timer)
          resolve(commands)
        },
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        const recent = this.commands
          .slice(-5)
          .map((command) => `${command.paymentId} (${command.occurrence}, attempt ${command.attempt})`)
          .join(", ")
        reject(
          new Error(
            `fake hub: expected at least ${count} payment command(s) within ${timeoutMs} ms, got ${this.commands.length}${recent === "" ? "" : `; latest: ${recent}`}`,
          ),
        )
      }, timeoutMs)
      this.waiters.add(waiter)
    })
  }

  setVerdict(paymentId: string, verdict: HubVerdict): void {
    this.verdicts.set(paymentId, verdict)
  }

  async publishResult(result: PaymentResult, msgId?: string): Promise<void> {
    await this.publisher.publish(this.resultSubject, JSON.stringify(result), msgId)
  }

  get stopped(): boolean {
    return this.stopping !== undefined
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  private async shutdown(): Promise<void> {
    await this.messages?.close()
    // Commands already taken are answered before the connection goes.
    if (this.inFlight > 0 || this.queueHead < this.queue.length) {
      await new Promise<void>((resolve) => {
        this.idle = resolve
      })
    }
    this.statusSubscription?.unsubscribe()
    this.publisher.close()
    await this.connection.drain().catch(() => undefined)
  }

  /** The consumer's callback: runs synchronously for every command of a pull batch. */
  receive(message: JsMsg): void {
    let command: PaymentCommand
    try {
      command = decodeCommand(message.json<unknown>())
    } catch (error) {
      console.error(
        `fake hub: undecodable command on ${message.subject} (seq ${message.seq}): ${String(error)}`,
      )
      // term() without a reason: NATS 2.9.10 redelivers a message terminated with one.
      message.term()
      return
    }
    this.commands.push(command)
    if (this.echoCommand) this.echoes.set(command.paymentId, echoOf(command))
    this.notifyWaiters()
    let verdict: HubVerdict
    try {
      verdict = this.verdictFor(command)
    } catch (error) {
      // A throwing `decide` is a bug in the test: say so loudly, and never answer this command.
      console.error(`fake hub: decide threw for ${command.paymentId}: ${String(error)}`)
      message.term()
      return
    }
    if (verdict === "silent") {
      message.ack()
      return
    }
    this.queue.push({ command, verdict, message })
    this.pump()
  }

  private pump(): void {
    while (this.inFlight < maxResultsInFlight && this.queueHead < this.queue.length) {
      const pending = this.queue[this.queueHead] as PendingAnswer
      this.queueHead += 1
      this.inFlight += 1
      void this.answer(pending)
    }
    if (this.queueHead > 10_000) {
      this.queue = this.queue.slice(this.queueHead)
      this.queueHead = 0
    }
  }

  private async answer({ command, verdict, message }: PendingAnswer): Promise<void> {
    try {
      await this.publisher.publish(
        this.resultSubject,
        JSON.stringify(resultFor(command.paymentId, verdict, this.echoes.get(command.paymentId))),
        `result:${command.paymentId}`,
      )
      this.answered += 1
      message.ack()
    } catch (error) {
      // A dropped connection fails every result in flight at once: that is expected, not news.
      if (!/abandoned: connection/.test(String(error)))
        console.error(`fake hub: result for ${command.paymentId} not published, will retry: ${String(error)}`)
      message.nak(1_000)
    } finally {
      this.inFlight -= 1
      this.pump()
      if (this.inFlight === 0 && this.queueHead >= this.queue.length) this.idle?.()
    }
  }

  private verdictFor(command: PaymentCommand): HubVerdict {
    const known = this.verdicts.get(command.paymentId)
    if (known !== undefined) return known
    const decided = this.decide(command)
    this.verdicts.set(command.paymentId, decided)
    return decided
  }

  private notifyWaiters(): void {
    for (const waiter of this.waiters) {
      if (this.commands.length >= waiter.count) {
        this.waiters.delete(waiter)
        waiter.resolve(this.commands.slice())
      }
    }
  }

  private statusReply(body: string): PaymentResult | { status: "unknown" } {
    let paymentId: unknown
    try {
      paymentId = (JSON.parse(body) as { paymentId?: unknown } | null)?.paymentId
    } catch {
      return { status: "unknown" }
    }
    if (typeof paymentId !== "string") return { status: "unknown" }
    const verdict = this.verdicts.get(paymentId)
    return verdict === undefined || verdict === "silent"
      ? { status: "unknown" }
      : resultFor(paymentId, verdict, this.echoes.get(paymentId))
  }
}

/** Connects, waits for the engine's HUB_PAYMENTS stream, and starts answering commands. */
export const startFakeHub = async (options: FakeHubOptions): Promise<FakeHub> => {
  const topology = makeTopology(options.naming)
  const durable = options.consumerName ?? "fake-hub"
  const connection = await connect({
    servers: options.natsUrl,
    name: `fake-hub:${durable}`,
    // Like the real hub, it rides out a NATS server restart (fault scenario 3).
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // Without this every request (consumer pulls included) builds Error objects just for stack traces.
    noAsyncTraces: true,
  })
  try {
    const jsm = await jetstreamManager(connection)
    const js = jetstream(connection)
    await waitForStream(jsm, topology.streams.hubPayments)
    await ensureCommandConsumer(
      jsm,
      topology.streams.hubPayments,
      durable,
      topology.subjects.hubCommand,
      options.ackWaitMs ?? consumerAckWaitMs,
    )
    const consumer = await js.consumers.get(topology.streams.hubPayments, durable)
    const hub = new RunningFakeHub(
      connection,
      new JetStreamPublisher(connection),
      topology.subjects.hubResult,
      options.decide ?? (() => ({ status: "succeeded", retryable: false })),
      durable,
      options.echoCommand ?? false,
    )
    // A callback, not the async iterator: a whole pull batch is handled in one go, so its
    // publishes and acks leave in a few socket writes instead of one write per message.
    const messages = await consumer.consume({
      max_messages: 1_000,
      callback: (message) => hub.receive(message),
    })
    hub.start(messages, topology.subjects.hubStatus)
    // Status requests published right after this resolves must find the subscription.
    await connection.flush()
    return hub
  } catch (error) {
    await connection.close().catch(() => undefined)
    throw error
  }
}
