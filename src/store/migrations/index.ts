/** Every migration, in order. Names sort in the order they must run. */
import type { Migration } from "kysely"
import * as initial from "./0001_initial.ts"
import * as leanWritePath from "./0002_lean_write_path.ts"
import * as eventKindsAndLimits from "./0003_event_kinds_and_limits.ts"
import * as channels from "./0004_channels.ts"
import * as providersAndReminders from "./0005_providers_and_reminders.ts"
import * as partitions from "./0006_partitions.ts"
import * as console from "./0007_console.ts"
import * as traceContext from "./0008_trace_context.ts"
import * as consoleLockout from "./0009_console_lockout.ts"
import * as duplicateSuspected from "./0010_duplicate_suspected.ts"
import * as clusterSecret from "./0011_cluster_secret.ts"
import * as retention from "./0012_retention.ts"
import * as paymentSpendMonth from "./0013_payment_spend_month.ts"

export const migrations: Record<string, Migration> = {
  "0001_initial": initial,
  "0002_lean_write_path": leanWritePath,
  "0003_event_kinds_and_limits": eventKindsAndLimits,
  "0004_channels": channels,
  "0005_providers_and_reminders": providersAndReminders,
  "0006_partitions": partitions,
  "0007_console": console,
  "0008_trace_context": traceContext,
  "0009_console_lockout": consoleLockout,
  "0010_duplicate_suspected": duplicateSuspected,
  "0011_cluster_secret": clusterSecret,
  "0012_retention": retention,
  "0013_payment_spend_month": paymentSpendMonth,
}
