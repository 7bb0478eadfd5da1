/**
 * The protocol fuzz suite's seeded run (the long run is `npm run fuzz`): every family of hostile
 * requests against a real engine over NATS, each request checked against every invariant
 * (ProtocolFuzz.ts). The known hostile cases run first in every family, whatever the seed draws.
 * A failure prints the broken invariants, the exact bytes sent, the seed and fast-check's path:
 * `FUZZ_SEED=<seed> npx vitest run test/fuzz/protocol-fuzz.test.ts` runs the same requests again.
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { World } from "../../harness/World.ts"
import {
  type FuzzSession,
  families,
  familyProperty,
  knownCases,
  openFuzzWorld,
  validBodies,
} from "./ProtocolFuzz.ts"

const SEED = Number(process.env.FUZZ_SEED ?? 20261208)
/** Requests per family: the whole run stays well under 30 s on the development machine. */
const RUNS: Readonly<Record<string, number>> = {
  envelope: 40,
  body: 60,
  "unknown-keys": 20,
  text: 30,
  duration: 30,
  size: 12,
  bytes: 30,
}

describe("protocol fuzz (seeded)", () => {
  let world: World
  let session: FuzzSession
  beforeAll(async () => {
    ;({ world, session } = await openFuzzWorld("fuzz_seeded"))
  })
  afterAll(async () => {
    await session.close()
    await world.dispose()
  })

  it("covers every operation the engine serves", async () => {
    expect((await session.servedOperations()).sort()).toEqual(Object.keys(validBodies).sort())
  })

  for (const family of Object.keys(families)) {
    it(`${family}: every request keeps every invariant`, async () => {
      await fc.assert(familyProperty(session, family), {
        seed: SEED,
        numRuns: RUNS[family] ?? 20,
        examples: (knownCases[family] ?? []).map((request) => [request]),
        // A request that stops the engine costs a restart per shrinking step: keep the report quick.
        interruptAfterTimeLimit: 20_000,
        markInterruptAsFailure: false,
      })
    }, 60_000)
  }

  it("the engine still answers after the whole run", async () => {
    expect(await session.answering()).toBe(true)
  })
})
