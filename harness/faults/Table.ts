/** The fault harness's results as a Markdown table, one row per scenario. */
import type { ScenarioOutcome } from "./scenarios.ts"

const number = (value: number) => value.toLocaleString("en")

/** Scenario, payments due, paid, skipped, failed, duplicates, lost, dead-lettered, the cross-checks, recovery time. */
export const faultsTable = (outcomes: ReadonlyArray<ScenarioOutcome>): string => {
  const header = [
    "scenario",
    "payments due",
    "paid",
    "skipped",
    "failed",
    "duplicates",
    "lost",
    "dead-lettered",
    "commands ⇔ records",
    "events ⇔ records",
    "recovery time",
  ]
  const rows = outcomes.map(({ scenario, report, recoveryMs, expectedDeadLetters }) => [
    scenario,
    number(report.due),
    number(report.paid),
    number(report.skipped),
    number(report.failed),
    number(report.duplicates),
    number(report.lost),
    // Bad messages a scenario sent on purpose are shown apart: the figure that must be 0 comes first.
    expectedDeadLetters === undefined
      ? number(report.deadLettered)
      : `${number(report.deadLettered - expectedDeadLetters)} (+${number(expectedDeadLetters)} bad on purpose)`,
    number(report.commandsWithoutRecords + report.recordsWithoutCommands + report.commandRecordMismatches),
    number(report.eventMismatches + report.repeatedMessages),
    `${(recoveryMs / 1_000).toFixed(recoveryMs < 10_000 ? 2 : 1)} s`,
  ])
  return [header, header.map(() => "---"), ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n")
}
