/**
 * What the console's browser tests share: an engine in its own world, a
 * real Chromium driven by playwright-core (one per test file, with a fresh
 * profile directory, reused by its tests; each test starts with no cookies),
 * and operators created the way `npm run operators` creates them.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type BrowserContext, chromium, type Page } from "playwright-core"
import type { RunningEngine, World } from "../../harness/World.ts"
import { hashPassword } from "../../src/console/Passwords.ts"
import { HttpServer } from "../../src/http/HttpServer.ts"
import { addOperator, type Role } from "../../src/store/OperatorStore.ts"

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

/** The flags that keep Chromium quiet and self-contained in CI (no sandbox: it runs as root in a container). */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]

/** One Chromium with a fresh profile directory of its own, removed when it closes. */
export interface ConsoleBrowser {
  readonly context: BrowserContext
  /** A new page, with every cookie of earlier tests forgotten (one operator signed in at a time). */
  readonly newPage: () => Promise<Page>
  readonly close: () => Promise<void>
}

export const launchBrowser = async (): Promise<ConsoleBrowser> => {
  const profile = await mkdtemp(join(tmpdir(), "rp-console-chromium-"))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1366, height: 900 },
  })
  return {
    context,
    newPage: async () => {
      await context.clearCookies()
      for (const open of context.pages()) await open.close()
      const page = await context.newPage()
      // A selector that never appears fails the test in seconds, well within the test's own timeout.
      page.setDefaultTimeout(10_000)
      return page
    },
    close: async () => {
      await context.close()
      await rm(profile, { recursive: true, force: true })
    },
  }
}

/** The console's address on a running engine. */
export const consoleUrl = async (engine: RunningEngine): Promise<string> =>
  `${(await engine.runtime.runPromise(HttpServer)).url}/console`

export const PASSWORD = "correct horse battery staple"

/** Creates an operator with `PASSWORD`, as the CLI would. */
export const createOperator = async (world: World, login: string, role: Role, password = PASSWORD) => {
  await addOperator(world.db, { login, role, passwordHash: await hashPassword(password) })
}

/** Signs in through the form and waits for the console's header to name the operator. */
export const signIn = async (page: Page, base: string, login: string, password = PASSWORD) => {
  await page.goto(`${base}/login`)
  await page.fill("#login", login)
  await page.fill("#password", password)
  await page.click("button[type=submit]")
  await page.waitForSelector(`[data-testid=operator]:has-text("${login}")`)
}
