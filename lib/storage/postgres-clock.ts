/**
 * The PostgreSQL server's clock in SQL, on its own so that code writing SQL
 * (the leader lease) does not load the driver with it.
 */

/** Both queues, the records and the leader lease share the server's clock (ms since the epoch), as Redis's TIME does for the Redis queue. */
export const NOW_MS = `(extract(epoch from statement_timestamp()) * 1000)::bigint`
