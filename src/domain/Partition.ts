/**
 * The partition of a subscription: the last 28 bits of its UUID (random for
 * every id the engine mints) modulo the partition count. The store computes
 * the same in SQL (`partitionSql` in store/LeaseStore.ts); a test keeps the
 * two in agreement.
 */
export const partitionOf = (id: string, count: number): number => Number.parseInt(id.slice(-7), 16) % count
