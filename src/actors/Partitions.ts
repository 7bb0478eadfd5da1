/**
 * Which subscriptions this instance is responsible for.
 *
 * Subscriptions are split into `RP_PARTITIONS` partitions by their id (the
 * last 28 bits of the UUID, which are random for every id the engine mints).
 * Every live instance computes the same assignment of partitions to live
 * instances (rendezvous hashing: an instance joining or leaving moves only
 * its own share) and holds a Postgres lease on each partition it owns. The
 * owner sweeps the partition's due subscriptions and runs their actors;
 * another instance that receives a message for one of them forwards it to
 * the owner (see SubscriptionActors).
 *
 * The lease is not what keeps money safe: every write is fenced by the
 * subscription's revision and every payment is unique per occurrence, so
 * two instances that both believe they own a partition for a moment (a
 * paused process waking up after its lease ran out) still pay once.
 */
import { createHash } from "node:crypto"
import { Context, Effect, Layer } from "effect"
import { newId } from "../domain/Ids.ts"
import { partitionOf } from "../domain/Partition.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { LeaseStore } from "../store/LeaseStore.ts"

export { partitionOf }

/** A well-spread 32-bit score of a short string, the same on every instance (runs a few dozen times a round). */
const score = (text: string): number => createHash("sha256").update(text).digest().readUInt32BE(0)

/**
 * Who owns what when `instances` are live: each partition goes to the instance scoring highest for it
 * (rendezvous hashing, so a join or a leave moves few partitions), except that nobody takes more than
 * its fair share (ceil(count / instances)), so two instances of 16 partitions get 8 each rather than
 * what chance gives. Every instance computes the same answer from the same list of live instances.
 */
export const assignPartitions = (
  instances: ReadonlyArray<string>,
  count: number,
): ReadonlyArray<string | undefined> => {
  const sortedInstances = [...instances].sort()
  const fairShare = Math.ceil(count / Math.max(1, sortedInstances.length))
  const load = new Map<string, number>()
  const owners: Array<string | undefined> = []
  for (let partition = 0; partition < count; partition++) {
    const ranked = sortedInstances
      .map((instance) => ({ instance, value: score(`${instance}#${partition}`) }))
      .sort((a, b) => b.value - a.value || (a.instance < b.instance ? -1 : 1))
    const owner = ranked.find(({ instance }) => (load.get(instance) ?? 0) < fairShare)?.instance
    if (owner !== undefined) load.set(owner, (load.get(owner) ?? 0) + 1)
    owners.push(owner)
  }
  return owners
}

/** The partitions `instance` should own when `instances` are live. */
export const desiredPartitions = (
  instance: string,
  instances: ReadonlyArray<string>,
  count: number,
): ReadonlyArray<number> =>
  assignPartitions(instances, count).flatMap((owner, partition) => (owner === instance ? [partition] : []))

/** This instance's partitions, as the lease keeper last settled them. */
export interface PartitionsService {
  readonly count: number
  readonly instanceId: string
  /** Whether this instance owns the partition of subscription `id`. */
  readonly ownsId: (id: string) => boolean
  readonly owns: (partition: number) => boolean
  /** The partitions owned now, ascending; `all` when this instance owns every one (the query needs no filter). */
  readonly owned: () => ReadonlyArray<number> | "all"
  /** The epoch each owned partition was taken at. */
  readonly epochs: () => ReadonlyMap<number, number>
  /**
   * A fresh subscription id in a partition this instance owns, so a subscription created here is also run
   * here from its first message (any id when it owns none, e.g. during a handover).
   */
  readonly newOwnedId: () => string
  /** Called by the lease keeper only. */
  readonly grant: (acquired: ReadonlyArray<{ partition: number; epoch: number }>) => void
  readonly revoke: (partitions: ReadonlyArray<number>) => void
}

export class Partitions extends Context.Service<Partitions, PartitionsService>()("rp/actors/Partitions") {
  /**
   * Lays out the partitions (or checks the layout) and takes this instance's share of the free ones at
   * once, so a single instance starts owning everything and work starts without waiting for a lease round.
   */
  static readonly layer = Layer.effect(
    Partitions,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const leases = yield* LeaseStore
      const count = config.partitions
      const laidOut = yield* leases.ensureLayout(count)
      if (laidOut !== count) {
        return yield* Effect.die(
          new Error(
            `RP_PARTITIONS is ${count} but the database was laid out with ${laidOut} partitions; ` +
              `every instance must use ${laidOut} (changing the count needs every instance stopped first)`,
          ),
        )
      }
      const state = makePartitionState(count, config.instanceId)
      const live = yield* leases.heartbeat(config.instanceId, config.leaseTtlMs)
      const desired = desiredPartitions(config.instanceId, live, count)
      state.grant(yield* leases.acquire(config.instanceId, desired, config.leaseTtlMs))
      yield* Effect.logInfo("partitions ready").pipe(
        Effect.annotateLogs({ partitions: count, owned: state.epochs().size, liveInstances: live.length }),
      )
      return state
    }),
  )
}

/** The in-memory side of ownership: plain functions, because `ownsId` runs for every message. */
export const makePartitionState = (count: number, instanceId: string): PartitionsService => {
  const epochs = new Map<number, number>()
  let sorted: ReadonlyArray<number> = []
  const resort = () => {
    sorted = [...epochs.keys()].sort((a, b) => a - b)
  }
  return {
    count,
    instanceId,
    ownsId: (id) => epochs.size === count || epochs.has(partitionOf(id, count)),
    owns: (partition) => epochs.has(partition),
    owned: () => (epochs.size === count ? "all" : sorted),
    newOwnedId: () => {
      // Owning k of P partitions, a random id lands in one with probability k/P: a few draws at most.
      for (let draw = 0; draw < 256; draw++) {
        const id = newId()
        if (epochs.size === count || epochs.has(partitionOf(id, count))) return id
      }
      return newId()
    },
    epochs: () => epochs,
    grant: (acquired) => {
      for (const { partition, epoch } of acquired) epochs.set(partition, epoch)
      resort()
    },
    revoke: (partitions) => {
      for (const partition of partitions) epochs.delete(partition)
      resort()
    },
  }
}
