import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    maxWorkers: 2,
    // Engines log to the console: show a test's logs only when it fails, so a green run fits a screen.
    silent: "passed-only",
    // Integration tests take seconds by design; list only the truly slow ones.
    slowTestThreshold: 20_000,
  },
})
