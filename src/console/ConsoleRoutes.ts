/**
 * The operator console ("Operation Studio") on the engine's HTTP server,
 * under `/console`: server-rendered pages for the bank's support and
 * operations staff. See docs/operator-guide.md.
 */
import { Effect, FiberSet, Layer } from "effect"
import { Hono } from "hono"
import { EngineClock } from "../actors/EngineClock.ts"
import { LiveSettings } from "../actors/LiveSettings.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { HttpApp } from "../http/HttpServer.ts"
import { Channels } from "../protocol/Channels.ts"
import { Database } from "../store/Database.ts"
import { Nats } from "../streams/Nats.ts"
import { Topology } from "../streams/Topology.ts"
import { registerAuditPage } from "./AuditPage.ts"
import { type ConsoleEnv, registerAuth } from "./Auth.ts"
import { registerChannelsPage } from "./ChannelsPage.ts"
import { registerClients } from "./Clients.ts"
import { ConsoleOperations } from "./ConsoleOperations.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { registerDeadLetterPages } from "./DeadLetterPages.ts"
import { BASE } from "./Html.ts"
import { registerProvidersPage } from "./ProvidersPage.ts"
import { registerSettingsPage } from "./SettingsPage.ts"
import { registerSubscriptionPage } from "./SubscriptionPage.ts"
import { registerTodayPage } from "./TodayPage.ts"

/** Adds the console's routes to the engine's HTTP application. */
export const ConsoleRoutes = Layer.effectDiscard(
  Effect.gen(function* () {
    const app = yield* HttpApp
    const { db } = yield* Database
    const clock = yield* EngineClock
    const settings = yield* EngineConfig
    const topology = yield* Topology
    const { js, jsm } = yield* Nats
    const channels = yield* Channels
    const live = yield* LiveSettings
    const consoleOperations = yield* ConsoleOperations
    const run = yield* FiberSet.makeRuntimePromise<never>()
    const services: ConsoleServices = {
      db,
      run: (effect) => run(effect),
      runOperation: consoleOperations.run,
      engineNow: () => run(clock.now),
      settings,
      topology,
      js,
      jsm,
      channelRegistry: () => run(channels.current),
      reloadChannels: () => run(channels.reload),
      settingsInForce: async () => live.current(),
      reloadSettings: () => run(live.reload),
    }

    const studio = new Hono<ConsoleEnv>()
    registerAuth(studio, db, {
      trustedProxies: settings.consoleTrustedProxies,
      addressAttempts: settings.consoleAddressAttempts,
      addressWindowMs: settings.consoleAddressWindowMs,
    })
    registerTodayPage(studio, services)
    registerClients(studio, services)
    registerSubscriptionPage(studio, services)
    registerProvidersPage(studio, services)
    registerChannelsPage(studio, services)
    registerSettingsPage(studio, services)
    registerDeadLetterPages(studio, services)
    registerAuditPage(studio, services)
    studio.get("/", (c) => c.redirect(`${BASE}/today`, 303))
    studio.onError((error, c) => {
      void run(
        Effect.logError("console request failed", error).pipe(Effect.annotateLogs({ path: c.req.path })),
      )
      // A fresh response: nothing the handler had prepared (a session cookie above all) goes out with a failure.
      return new Response("The console failed to handle this request; the engine's log has the details.", {
        status: 500,
        headers: { "content-type": "text/plain; charset=UTF-8" },
      })
    })
    app.route(BASE, studio)
  }),
)
