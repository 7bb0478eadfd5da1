/**
 * `npm run faults`: runs the fault scenarios at FAULTS_N due subscriptions
 * (default 5,000), prints the table, and writes it with what each scenario
 * does to docs/faults.md. Exits 1 when any invariant or scenario check fails.
 *
 * Environment: FAULTS_N; FAULTS_ONLY (comma-separated scenario numbers, e.g.
 * `1` or `6,8`; scenario 7 alone takes over ten minutes); NATS_URL; TEST_DATABASE_ADMIN_URL and BENCH_POSTGRES_URL
 * (the Postgres server, default postgres://postgres@127.0.0.1:5432).
 */
import { writeFileSync } from "node:fs"
import { availableParallelism, totalmem } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import {
  hubMisbehaves,
  killMidBurst,
  natsRestart,
  natsUnreachable,
  passed,
  postgresOutage,
  postgresUnreachable,
  postgresUnreachableLong,
  type ScenarioOutcome,
  twoInstancesKillOne,
} from "./scenarios.ts"
import { faultsTable } from "./Table.ts"

const parseCount = (name: string, fallback: number): number => {
  const text = process.env[name]
  if (text === undefined || text === "") return fallback
  const value = Number(text.replaceAll("_", "").replaceAll(",", ""))
  if (!Number.isSafeInteger(value) || value < 10)
    throw new Error(`${name} must be an integer of 10 or more, got ${text}`)
  return value
}

const n = parseCount("FAULTS_N", 5_000)
const only = (process.env.FAULTS_ONLY ?? "")
  .split(",")
  .map((part) => part.trim())
  .filter((part) => part !== "")
const scenarios: ReadonlyArray<readonly [string, (n: number) => Promise<ScenarioOutcome>]> = [
  ["1", killMidBurst],
  ["2", twoInstancesKillOne],
  ["3", natsRestart],
  ["4", postgresOutage],
  ["5", hubMisbehaves],
  ["6", (size) => postgresUnreachable(size)],
  ["7", (size) => postgresUnreachableLong(size)],
  ["8", (size) => natsUnreachable(size)],
]

const outcomes: Array<ScenarioOutcome> = []
for (const [number, run] of scenarios) {
  if (only.length > 0 && !only.includes(number)) continue
  console.log(`scenario ${number}: ${n.toLocaleString("en")} due subscriptions...`)
  const outcome = await run(n)
  outcomes.push(outcome)
  console.log(`  ${passed(outcome) ? "ok" : "FAILED"} in ${outcome.seconds.toFixed(1)} s`)
  for (const note of outcome.notes) console.log(`  ${note}`)
  for (const check of outcome.checks) console.log(`  ${check.ok ? "ok  " : "FAIL"} ${check.what}`)
  for (const problem of outcome.report.problems) console.log(`  problem: ${problem}`)
}

const table = faultsTable(outcomes)
console.log(`\n${table}`)

const machine = `${availableParallelism()} CPUs, ${Math.round(totalmem() / 2 ** 30)} GB, Node ${process.version}`
const docs = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "docs", "faults.md")
if (only.length === 0) {
  writeFileSync(docs, faultsDoc(table, n, machine, outcomes))
  console.log(`written to ${docs}`)
}
process.exitCode = outcomes.every(passed) ? 0 : 1

function faultsDoc(
  latest: string,
  size: number,
  where: string,
  results: ReadonlyArray<ScenarioOutcome>,
): string {
  const details = results
    .map(
      (outcome) =>
        `**${outcome.scenario}** (${outcome.seconds.toFixed(0)} s): ${outcome.notes.join("; ")}.\n\n${outcome.checks
          .map((check) => `- ${check.ok ? "✓" : "✗"} ${check.what}`)
          .join("\n")}`,
    )
    .join("\n\n")
  return `# Fault tests

The engine promises that money moves at most once per occurrence and that
nothing due is silently lost (contract section 3). The fault harness
(\`harness/faults/\`) puts it through faults with a real burst — thousands of
subscriptions due at one tick, a fake hub answering over NATS, the real
Postgres and JetStream — and then checks, from the database and the streams
alone (\`harness/faults/Invariants.ts\`):

- every due occurrence ends in exactly one of paid, failed for good, or
  skipped with a reason; **lost** counts those with none and nothing in
  flight (no attempt awaiting its result, no retry planned);
- no occurrence has two successful payments, and no second command went out
  for it unless the attempt before failed with \`retryable: true\`
  (**duplicates**);
- every payment record has its command in \`HUB_PAYMENTS\` and every command
  its record, agreeing on subscription, occurrence, attempt and amount
  (**commands ⇔ records**: the count of those that do not);
- events and notifications match the records: one \`payment.requested\` per
  attempt, one \`payment.succeeded\` event and notice per paid one, one
  \`payment.failed\` per final failure, one \`payment.skipped\` per skip, none
  for anything the records do not know (**events ⇔ records**); and no message
  is stored twice under the same \`Nats-Msg-Id\`;
- nothing is in \`RP_DLQ\` but the bad messages a scenario sends on purpose
  (scenario 5's results for unknown payments, shown apart): a fault is never
  a reason to dead-letter (**dead-lettered**).

## Latest run

FAULTS_N = ${size.toLocaleString("en")}, on ${where}, ${new Date().toISOString().slice(0, 10)}.

${latest}

Duplicates, lost, dead-lettered, commands ⇔ records and events ⇔ records must be 0.

${details}

## The scenarios

**1. kill -9 mid-burst.** N subscriptions are due at one tick. The engine runs
as its own process (as \`npm start\` runs it, with commit batches of 20 and 20
wakes in flight so that the burst is still under way when it dies). Once the
hub has received 30% of the commands — progress observed, not a timer — the
process gets SIGKILL. A new process starts and the clock's next tick is
published. **Recovery time** is from that restart to the last result
recorded. The new process (under a second to start) wakes what is still due
at once and the burst goes on; its first outbox sweep sends the commands the
dead process had committed but not published, under the same message ids, so
the stream drops any it had in fact sent. What sets the figure is the
consumers' ack wait (5 s here, \`RP_ACK_WAIT\`; 30 s by default): the hub
results and the tick the dead process had taken but not acknowledged are
delivered again only when it runs out: most results are in within a couple of
seconds of the restart (the run's notes above say when 95% were), the last
ones at the ack wait.

**2. Two instances, kill one.** Two engine processes with distinct
\`RP_INSTANCE_ID\`s run on one world (one Postgres database, one set of
streams), each with commit batches of 20 and 20 wakes in flight, and leases
of 3 s renewed every 0.5 s (\`RP_LEASE_TTL\`, \`RP_LEASE_RENEW\`; production: 10 s
and 2 s). The scenario waits until both hold partition leases (8 of 16 each),
then makes N subscriptions due at one tick: each instance sweeps its own
partitions and forwards results for the other's. Once the hub has received
30% of the commands — progress observed, not a timer — one instance gets
SIGKILL and is **not** restarted; no further tick is published. Its
heartbeat stops; the survivor takes its partitions when their leases run out
and sweeps them. The scenario checks that the survivor holds **every lease
within the stated bound: the lease TTL plus two rounds** (4 s here; 14 s with
the defaults), that it finished everything alone and still answers
\`subscription.get\`. **Recovery time** is from the kill to the last result
recorded: the hub results the dead instance had pulled come back only after
the consumers' ack wait (5 s here, \`RP_ACK_WAIT\`; 30 s by default), and if it
held the tick, that comes back after \`RP_TICK_ACK_WAIT\`. The commands it had
committed but not published wait in the outbox for the survivor's sweeper
(age 1 s, every 0.5 s here; production: \`RP_OUTBOX_SWEEP_AGE\` 10 s,
\`RP_OUTBOX_SWEEP_INTERVAL\` 5 s) and go out under the same message ids.
Nothing here relies on the lease for money: if the dead instance had been
only paused and woke up still acting on its partitions, each transition is
fenced by the subscription's \`revision\` (the loser reloads and finds nothing
left to do), payments are unique per (subscription, occurrence, attempt),
debt bills are claimed in \`debt_bills\` and monthly spend rows are locked;
\`test/integration/partitions.test.ts\` runs a burst with both instances
believing they own every partition and finds each occurrence paid once.
See [operations.md](operations.md) for running several instances.

**3. NATS server restart.** The scenario starts its own nats-server
(\`nats-server -a 127.0.0.1 -p <free port> -js -sd <temporary directory>\`, so
the shared server is untouched); the world, the engine (its own process, commit
batches of 20 and 20 wakes in flight) and the fake hub all connect to it. N
subscriptions are due at one tick. Once the hub has received 30% of the
commands — progress observed, not a timer — the server gets SIGKILL; a second
later it starts again on the same port and store directory. Nothing else is
done: no new tick, no engine restart. The engine must reconnect, its consumers
resume, whatever did not get its publish ack goes out again from the outbox under
the same message ids (the stream drops what it had stored), and afterwards the
process must still be running and answer \`subscription.get\`. **Recovery
time** is from the server being ready again to the last result recorded. This
scenario found a stall: publishes whose acks were lost with the connection (and
those the client buffered while disconnected) waited out the publisher's 30 s
ack timeout, holding the publish workers, so the burst stopped for 30 s after
every NATS restart; the publisher now fails everything awaiting an ack when the
connection drops and when it comes back, and the outbox republishes at once
(\`src/streams/JetStreamPublisher.ts\`). With SIGTERM instead of SIGKILL the
outcome is the same. Commands the server had handed to the hub, or the hub's
acks for them, can be lost with the server and come again after the hub's ack
wait, 5 s here as the engine's (the fake hub's default is 30 s); that only sets
how long settling takes.

**4. Postgres unavailable.** N subscriptions are due at one tick; the engine
runs as its own process (so a crash shows as its exit), with commit batches of
20 and 20 wakes in flight. From the harness's own admin connection, every
backend on the engine's database is terminated with \`pg_terminate_backend\`
every 100 ms for 4 s: running queries and transactions fail, idle
connections close under the pool, the channel registry's LISTEN connection
drops. The tick is published just after the first round, so the burst runs
into the outage whatever N is. Then the terminations stop and the clock's next
tick is published: wakes that failed are still due and run again. The process
must still be running afterwards and answer \`subscription.get\`. The
engine's outbox sweep runs here at an age of 1 s and every 0.5 s (production:
10 s and 5 s): rows whose messages went out but whose delete failed wait for
it. **Recovery time** is from the end of the outage to the last result
recorded. This scenario found a crash: a pooled connection that the server
closed while it was checked out (between two statements of a transaction)
emitted \`error\` with no listener and took the process down; the pool now
gives every connection a listener (\`src/store/Database.ts\`).

**5. The hub misbehaves.** N subscriptions are due at one tick, split into
groups of N/20: paused before the tick (skipped, reason \`paused\`); declined
by the hub (failed for good); answered and then the same result repeated
under a new message id, with none, and with the hub's own (recorded once, no
second event); answered \`succeeded\` and then \`failed\` + retryable for the
same payment (the paid record stands, a \`result_conflict\` decision is
written, nothing is resent); silent, then cancelled by the client, then the
result arrives (recorded); silent for good (at the 15-minute result timeout
the engine asks \`hub.payment.status\`, the hub does not know, the payment is
\`unknown\`; then the hub learns the outcome and the next query, a minute
later, records it). Another N/20 results name payment ids the engine never
sent, a fifth of them not even UUIDs: each goes to \`RP_DLQ\`. **Recovery
time** is from the tick of that later query to the last result recorded.

**6, 7. Postgres unreachable for a minute, for ten minutes.** N
subscriptions are due at one tick; the engine runs as its own process
(commit batches of 20, 20 wakes in flight) with the production redelivery
budget (\`RP_MAX_DELIVERIES\` 5, 1-2-4-8 s apart), and reaches Postgres
through a TCP proxy the harness controls (\`harness/TcpProxy.ts\`); the
harness, the hub and the shared server are untouched. The hub holds its
answers back until the cut. Once it has received 30% of the commands —
progress observed, not a timer — the proxy is cut: open connections are
reset, new ones refused, for 60 s (scenario 6) or 600 s (scenario 7). The
held results are published during the outage, half at once and half
half-way through, and a tick per engine minute (at most every 30 s). The
engine's first failed message has a probe find Postgres down: every consumer
stops pulling, readiness answers 503 naming \`postgres\` (checked about every
5 s), and the engine probes until the proxy is restored. Then nothing else is
done: no new tick, no restart. Before this, such an outage moved the results
to \`RP_DLQ\` after 15 s (five failed deliveries) for someone to replay by
hand; now each failure during the outage is given back uncounted and the
consumers resume by themselves. **Recovery time** is from the restore to the
last result recorded: most of it is the rest of the burst (the wakes that
failed during the outage are swept when the instance takes its partitions
back, 20 at a time here).

**8. NATS unreachable for the engine for a minute.** The same, with the proxy
between the engine and NATS (the hub and the harness keep their own
connections, so results and ticks go on reaching the streams): the engine's
connection drops and its reconnects are refused for 60 s. Consumers pause at
the disconnect; commands committed meanwhile wait in the outbox (its sweeper
waits for NATS too) and go out under their message ids once the connection
is back.

## Running it

\`\`\`sh
npm run faults                 # all scenarios at 5,000, rewrites this page
FAULTS_N=20000 npm run faults  # larger
FAULTS_ONLY=1 npm run faults   # one scenario (this page is left as it is)
FAULTS_ONLY=6,8 npm run faults # the one-minute outages
FAULTS_ONLY=7 npm run faults   # the ten-minute outage alone (about 14 minutes)
\`\`\`

It needs the same NATS and Postgres as the tests, and makes and drops its own
database and streams per scenario. The exit status is 1 if any invariant or
scenario check fails; the problems found are printed above the table. CI runs
the short form, \`test/integration/faults.test.ts\`, at N = 600 (scenarios 6 and
8 with 20 s outages, longer than the redelivery budget).
`
}
