import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { assignPartitions, desiredPartitions } from "../../src/actors/Partitions.ts"

const instanceNames = fc.uniqueArray(fc.stringMatching(/^[a-z0-9-]{1,12}$/), { minLength: 1, maxLength: 6 })

describe("sharing partitions between live instances", () => {
  it("gives every partition exactly one owner, nobody more than a fair share", () => {
    fc.assert(
      fc.property(instanceNames, fc.integer({ min: 1, max: 64 }), (instances, count) => {
        const owners = assignPartitions(instances, count)
        expect(owners).toHaveLength(count)
        const fairShare = Math.ceil(count / instances.length)
        for (const instance of instances) {
          const mine = desiredPartitions(instance, instances, count)
          expect(mine.length).toBeLessThanOrEqual(fairShare)
          for (const partition of mine) expect(owners[partition]).toBe(instance)
        }
        expect(owners.every((owner) => owner !== undefined && instances.includes(owner))).toBe(true)
      }),
    )
  })

  it("is the same whatever order an instance lists the live ones in", () => {
    fc.assert(
      fc.property(instanceNames, fc.integer({ min: 1, max: 64 }), (instances, count) => {
        expect(assignPartitions([...instances].reverse(), count)).toEqual(assignPartitions(instances, count))
      }),
    )
  })

  it("splits 16 partitions 8 and 8 between two instances", () => {
    expect(desiredPartitions("engine-1", ["engine-1", "engine-2"], 16)).toHaveLength(8)
    expect(desiredPartitions("engine-2", ["engine-1", "engine-2"], 16)).toHaveLength(8)
  })

  it("moves only the leaving instance's partitions when one of three leaves", () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 64 }), (count) => {
        const before = assignPartitions(["a", "b", "c"], count)
        const after = assignPartitions(["a", "b"], count)
        const moved = before.filter((owner, partition) => owner !== "c" && after[partition] !== owner).length
        // Fair shares change with the instance count, so a few may move; most stay put.
        expect(moved).toBeLessThanOrEqual(Math.ceil(count / 3))
      }),
    )
  })
})
