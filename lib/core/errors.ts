/**
 * The one table of coded errors. Code branches on `err.code`, never on
 * `instanceof`: errors cross IPC and the meta port as `{ code, message, details }`
 * and are rebuilt on the other side with {@link fromWire}. docs/errors.md is
 * generated from it (`npm run docs:errors`; a test fails when they differ).
 *
 * Each message is a template: the table states the sentence of every code, and
 * call sites pass values, not prose: `throw createError('ESPRA_ERR_NODE_LISTEN',
 * { option: '--port', host, port, reason })`. The values fill the `{name}`s and
 * travel on as `details`, so the same condition reads the same everywhere and
 * a peer or a script can still read the fields. Placeholders hold values (an
 * option, a node id, a limit, a peer's or the OS's own error text), not
 * sentences. A call site whose cause the template cannot name passes it in the
 * code's `{reason}` slot: a few words naming the cause ("no such file",
 * "must be a duration such as 10s"), never a second copy of the sentence. A code
 * without a `{reason}` slot takes none: add a code, or a slot, to the table.
 * `new EspraError(code, message)` is for text that is not ours to shape (a
 * message received from a peer) and for code not yet converted.
 */
import { fillTemplate, type Placeholders, type PlaceholderValue } from './error-template.js'

interface ErrorSpec {
  /** The message template: a sentence with `{name}` placeholders (see the file's comment). */
  readonly message: string
  /** HTTP status where an HTTP answer carries this error. */
  readonly status: number
}

export const ERRORS = {
  ESPRA_ERR_INTERNAL: { message: 'internal error: {reason}', status: 500 },
  ESPRA_ERR_CONFIG_INVALID: { message: '{option}: {reason}', status: 500 },
  ESPRA_ERR_CONFIG_FILE: { message: 'cannot read config file', status: 500 },
  ESPRA_ERR_SECRET_MISSING: { message: '{option}: cannot read {file} ({reason}); no cluster secret: set ESPRA_SECRET or --secret-file (espra-node up creates one)', status: 500 },
  ESPRA_ERR_SECRET_INSECURE: { message: '{option}: {file} is open to other users (mode {mode}); run: {fix}', status: 500 },
  ESPRA_ERR_UWS_NATIVE: { message: 'uWebSockets.js native addon failed to load ({binary}): {reason}', status: 500 },
  ESPRA_ERR_NODE_LISTEN: { message: '{option}: cannot listen on {host}:{port} ({reason}); is another node running?', status: 500 },
  ESPRA_ERR_FRAME_TOO_LARGE: { message: '{what} of {length} bytes exceeds the {limit}-byte limit', status: 413 },
  ESPRA_ERR_FRAME_MALFORMED: { message: 'frame is not valid msgpack: {reason}', status: 400 },
  ESPRA_ERR_META_PROTOCOL: { message: 'meta protocol violation: {reason}', status: 400 },
  ESPRA_ERR_META_VERSION: { message: '{who} speaks meta protocol v{version}; this build speaks v{supported}', status: 400 },
  ESPRA_ERR_META_AUTH: { message: 'authentication failed: {reason}', status: 401 },
  ESPRA_ERR_META_TIMEOUT: { message: '{what} did not finish within {ms} ms', status: 504 },
  ESPRA_ERR_META_CLOSED: { message: 'meta connection closed: {reason}', status: 503 },
  ESPRA_ERR_META_UNKNOWN_OP: { message: 'unknown meta operation \'{op}\'', status: 400 },
  ESPRA_ERR_META_BAD_REQUEST: { message: '{field} {reason}', status: 400 },
  ESPRA_ERR_META_IDLE: { message: 'meta peer {peer} sent nothing for too long ({reason})', status: 408 },
  ESPRA_ERR_META_SLOW_PEER: { message: 'meta peer {peer} does not read its messages fast enough ({bytes} bytes unsent)', status: 503 },
  ESPRA_ERR_META_BUSY: { message: 'too many unauthenticated meta connections', status: 503 },
  ESPRA_ERR_META_REPLACED: { message: 'a newer session registered node id \'{id}\'', status: 409 },
  ESPRA_ERR_SEED_UNREACHABLE: { message: 'no seed reachable ({tried})', status: 503 },
  // A follower seed (PostgreSQL datastore, several seeds): registry, routing and pushes are the leader's; details.leader names its meta address when known.
  ESPRA_ERR_SEED_NOT_LEADER: { message: 'this seed does not lead the cluster: {reason}', status: 503 },
  ESPRA_ERR_META_NOT_REGISTERED: { message: 'peer has not registered as a node', status: 409 },
  ESPRA_ERR_CHILD_CRASHLOOP: { message: 'child is crash-looping; restarted with backoff, the node is degraded', status: 503 },
  ESPRA_ERR_IPC_TIMEOUT: { message: 'no IPC reply to \'{request}\': {reason}', status: 504 },
  ESPRA_ERR_IPC_UNKNOWN: { message: 'the {receiver} has no handler for the {what} \'{tag}\'', status: 500 },
  ESPRA_ERR_NOT_IMPLEMENTED: { message: 'not implemented yet', status: 501 },
  ESPRA_ERR_HTTP_NOT_FOUND: { message: 'no {what} {path} ({hint})', status: 404 },
  ESPRA_ERR_HTTP_DRAINING: { message: 'node is draining', status: 503 },
  ESPRA_ERR_HTTP_BAD_PATH: { message: 'request path {path} is malformed or leaves its root ({reason})', status: 400 },
  ESPRA_ERR_HTTP_METHOD: { message: '{method} is not allowed on {path} (allowed: {allowed})', status: 405 },
  // details.code: the Live protocol's numeric code (docs/live-protocol.md, "Errors").
  ESPRA_ERR_LIVE_PUBLISH: { message: 'publish to Live channel \'{channel}\' failed: {reason}', status: 502 },
  ESPRA_ERR_PROXY_BAD_REQUEST: { message: 'malformed HTTP request', status: 400 },
  ESPRA_ERR_PROXY_HEADERS_TOO_LARGE: { message: 'request head larger than --max-header-size', status: 431 },
  ESPRA_ERR_PROXY_TOO_MANY_HEADERS: { message: 'more header lines than a Live node reads', status: 431 },
  ESPRA_ERR_PROXY_METHOD: { message: 'method not served by Live nodes', status: 501 },
  ESPRA_ERR_PROXY_WEBSOCKET_VERSION: { message: 'unsupported WebSocket version: use 13', status: 426 },
  ESPRA_ERR_PROXY_TOO_MANY_CONNECTIONS: { message: 'too many connections from this address', status: 429 },
  ESPRA_ERR_PROXY_TOO_MANY_REQUESTS: { message: 'too many requests from this address', status: 429 },
  ESPRA_ERR_PROXY_NO_ROUTING_TABLE: { message: 'no routing table from the seed yet', status: 503 },
  ESPRA_ERR_PROXY_NO_LIVE_NODE: { message: 'no Live node in this region', status: 503 },
  ESPRA_ERR_PROXY_NODE_GONE: { message: 'the Live node serving this request left; reconnect', status: 503 },
  ESPRA_ERR_PROXY_UPSTREAM: { message: 'the Live node did not answer', status: 502 },
  ESPRA_ERR_STORAGE_KEY: { message: 'storage key {key}: {reason}', status: 400 },
  ESPRA_ERR_STORAGE_INVALID: { message: '{field} {reason}', status: 400 },
  ESPRA_ERR_STORAGE_RANGE: { message: 'range not satisfiable ({object} is {size} bytes)', status: 416 },
  // {problem}, not {reason}: details.reason is a short class of cause where one applies (an S3 error code).
  ESPRA_ERR_STORAGE_UNAVAILABLE: { message: '{store}: {problem}', status: 503 },
  // {problem}, not {reason}: details.reason is a short class of cause where one applies ('range', 'symlink').
  ESPRA_ERR_STORAGE_FAILED: { message: '{store}: {problem}', status: 502 },
  ESPRA_ERR_DATASTORE_INVALID: { message: '{field} {reason}', status: 400 },
  ESPRA_ERR_DATASTORE_SCHEMA: { message: '{store} has schema version {found}; this build knows up to {known} (run a newer espra-node)', status: 500 },
  // Retryable: the database is out of reach (or refused the seed's login) right now; the seed reconnects by itself.
  ESPRA_ERR_DATASTORE_UNAVAILABLE: { message: 'the datastore is unavailable: cannot use PostgreSQL at {postgres} ({reason})', status: 503 },
  ESPRA_ERR_BUILD_INVALID: { message: '{field} {reason}', status: 400 },
  ESPRA_ERR_BUILD_UPLOAD: { message: 'build blob upload stopped: {reason}', status: 400 },
  ESPRA_ERR_BUILD_HASH_MISMATCH: { message: 'the uploaded bytes of blob {hash} hash to {actual}; nothing was stored', status: 422 },
  ESPRA_ERR_BUILD_MISSING_BLOBS: { message: 'the blob store lacks {count} of this build\'s files; upload them first (build.plan)', status: 409 },
  ESPRA_ERR_BUILD_NOT_FOUND: { message: 'build {id} not found ({reason})', status: 404 },
  ESPRA_ERR_BUILD_LOAD: { message: 'build {build}: blob {hash} is {problem}', status: 502 },
  ESPRA_ERR_BUILD_INIT_TIMEOUT: { message: 'build {build} refused: init() did not finish within {timeoutMs} ms (--init-timeout); its workers were terminated', status: 504 },
  ESPRA_ERR_BUILD_STAGE_TIMEOUT: { message: 'a node did not say whether it staged the build in time', status: 504 },
  ESPRA_ERR_BUILD_REFUSED: { message: 'build {id} is current nowhere: refused by {refusals}', status: 409 },
  ESPRA_ERR_BUILD_REPLACED: { message: 'build {build} was dropped {during}', status: 409 },
  ESPRA_ERR_BUILD_ABANDONED: { message: 'build {id} is current nowhere: its deploy was abandoned ({reason})', status: 409 },
  ESPRA_ERR_APP_NO_BUILD: { message: 'no app build loaded yet', status: 503 },
  ESPRA_ERR_APP_BUSY: { message: 'every app worker is busy and the request queue is full', status: 503 },
  ESPRA_ERR_APP_TIMEOUT: { message: 'the application did not answer within --request-timeout', status: 504 },
  ESPRA_ERR_APP_HANDLER: { message: 'the application failed to handle the request', status: 500 },
  ESPRA_ERR_APP_BODY_TOO_LARGE: { message: 'request body larger than --max-body', status: 413 },
  // The previous build is kept.
  ESPRA_ERR_APP_INIT: { message: 'build {build} refused: {reason}', status: 502 },
  ESPRA_ERR_APP_ARGUMENT: { message: 'a ctx call got arguments that cannot be sent to the main thread', status: 500 },
  ESPRA_ERR_APP_RESPONSE: { message: 'the application returned an invalid response', status: 500 },
  ESPRA_ERR_TASK_INVALID: { message: '{field} must be {allowed}', status: 400 },
  ESPRA_ERR_TASK_UNAVAILABLE: { message: 'the task queue is unavailable: {reason}', status: 503 },
  ESPRA_ERR_TASK_FAILED: { message: '{queue} refused a task queue command: {reason}', status: 502 },
  ESPRA_ERR_TASK_NOT_FOUND: { message: 'no dead letter {id} ({hint})', status: 404 },
  ESPRA_ERR_MAIL_NOT_DURABLE: { message: 'an inbound message could not be stored, recorded or queued', status: 503 },
  ESPRA_ERR_MAIL_HANDOFF: { message: 'inbound message {id} could not be handed to the app: {reason}', status: 500 },
  ESPRA_ERR_MAIL_NOT_FOUND: { message: 'no {what} {id} ({hint})', status: 404 },
  ESPRA_ERR_MAIL_RECIPIENT_FORBIDDEN: { message: 'only a mail node of this cluster may ask the app about recipients (a signed request)', status: 403 },
  ESPRA_ERR_MAIL_NOT_FAILED: { message: 'the handoff of inbound message {id} has not failed: {reason}', status: 409 },
  ESPRA_ERR_MAIL_INVALID: { message: '{field} must be {allowed}', status: 400 },
  ESPRA_ERR_MAIL_HEADER_INJECTION: { message: '{field} holds CR, LF or NUL: refused (header injection)', status: 400 },
  ESPRA_ERR_MAIL_TOO_LARGE: { message: 'the outbound message is over {limit}: {reason}', status: 413 },
  ESPRA_ERR_MAIL_NOT_DURABLE_OUT: { message: 'outbound message {id} could not be stored and queued: {reason}', status: 503 },
  ESPRA_ERR_MAIL_STATE: { message: 'outbound message {id}: {reason}', status: 409 },
  ESPRA_ERR_MAIL_ABANDONED: { message: 'the SMTP client left while its message was being read (never leaves the mail node)', status: 400 },
  ESPRA_ERR_BUILD_NOT_SERVED: { message: 'build {id} is current, but after {ms} ms these nodes do not serve it: {behind}', status: 504 },
  ESPRA_ERR_BUILD_CANARY_UNAVAILABLE: { message: 'a canary deploy cannot run now: {reason}', status: 409 },
  ESPRA_ERR_BUILD_CANARY_FAILED: { message: 'build {id} failed its canary and is current nowhere (canaries rolled back): {reason}', status: 409 },
  // {state}: missing, malformed, forged or expired.
  ESPRA_ERR_UPLOAD_TOKEN_INVALID: { message: 'upload token {state} (send a valid one as Authorization: Bearer <token> or ?token=)', status: 401 },
  ESPRA_ERR_UPLOAD_TOKEN_USED: { message: 'this upload token was used already (or never minted)', status: 403 },
  ESPRA_ERR_UPLOAD_TOO_LARGE: { message: '{what} is {size} bytes; {limit} allows {max}', status: 413 },
  ESPRA_ERR_UPLOAD_TYPE: { message: 'type {type} is not allowed (allowed: {allowed})', status: 415 },
  ESPRA_ERR_UPLOAD_BAD_BODY: { message: 'the upload body could not be read: {reason}', status: 400 },
  ESPRA_ERR_UPLOAD_DISK_FULL: { message: 'no disk space left for the upload ({reason})', status: 507 },
  ESPRA_ERR_UPLOAD_UNAVAILABLE: { message: 'the upload token cannot be checked: {reason}', status: 503 },
  ESPRA_ERR_VHOST_FILE_MISSING: { message: 'no stored file {file}: upload it first', status: 404 },
  ESPRA_ERR_VHOST_NOT_FOUND: { message: '{mapping} is not mapped (admin vhost ls lists the mappings)', status: 404 },
  ESPRA_ERR_VHOST_SHADOWS: { message: '{host} is {why}, the cluster\'s own: a vhost there hides /app, /f, /upload and /uploads of every fileserver for requests to {host}; pass force (admin vhost set --force) to map it anyway', status: 409 },
  ESPRA_ERR_UPLOAD_NO_WHIRLPOOL: { message: 'whirlpool hashing is unavailable: start node with --openssl-legacy-provider ({reason})', status: 500 },
  ESPRA_ERR_TUS_VERSION: { message: 'Tus-Resumable {got}: this server speaks tus 1.0.0 only', status: 412 },
  ESPRA_ERR_TUS_BAD_REQUEST: { message: 'malformed tus request: {reason}', status: 400 },
  ESPRA_ERR_TUS_NOT_FOUND: { message: 'no upload {id} ({reason})', status: 404 },
  ESPRA_ERR_TUS_EXPIRED: { message: 'upload {id} expired at {expires}', status: 410 },
  ESPRA_ERR_TUS_OFFSET: { message: 'Upload-Offset is {asked}; the upload is at {offset} (or another PATCH advanced it first)', status: 409 },
  ESPRA_ERR_TUS_CONTENT_TYPE: { message: 'PATCH needs Content-Type: application/offset+octet-stream (got {got})', status: 415 },
  ESPRA_ERR_TUS_CHECKSUM: { message: 'the PATCH body\'s {algorithm} does not match its Upload-Checksum; nothing of it was recorded', status: 460 },
  ESPRA_ERR_ELB_TARGET_GROUP: { message: 'ELB {what}: no target group {arn} (check the ARN and the region)', status: 404 },
  ESPRA_ERR_ELB_CREDENTIALS: { message: 'ELB {what}: no usable AWS credentials ({name}: {reason})', status: 401 },
  ESPRA_ERR_ELB_UNAVAILABLE: { message: 'ELB {what} did not go through after every retry: {name} ({reason})', status: 503 },
  ESPRA_ERR_ELB_FAILED: { message: 'ELB {what}: AWS refused it with {name} (HTTP {status}): {reason}', status: 502 },
  ESPRA_ERR_META_FORBIDDEN: { message: '{op} is for admin peers only (this connection authenticated as a {kind} peer)', status: 403 },
  ESPRA_ERR_MAINTENANCE: { message: 'down for planned maintenance', status: 503 },
  // {state}: registered (the seed's registry has no such id) or connected (registered, but no link to this seed).
  ESPRA_ERR_NODE_UNKNOWN: { message: 'no {state} node is called \'{id}\' ({hint})', status: 404 },
  ESPRA_ERR_NODE_RELOAD_UNSUPPORTED: { message: 'node \'{id}\' ({role}) runs in its parent only: it has no children to replace', status: 409 },
  ESPRA_ERR_NODE_RELOAD_TIMEOUT: { message: 'node \'{id}\' did not finish replacing its children in time: {reason}', status: 504 },
  ESPRA_ERR_NODE_DRAIN_TIMEOUT: { message: 'node \'{id}\' did not {step} within {wait} (its order stands; admin nodes shows it)', status: 504 },
  ESPRA_ERR_NODE_RELOAD_FAILED: { message: 'node \'{id}\' could not replace its children: {reason}', status: 502 },
  ESPRA_ERR_ROLLING_MIN_HEALTHY: { message: 'a rolling restart would go below --min-healthy {minHealthy}: {reason}', status: 409 },
  ESPRA_ERR_ROLLING_NO_NODES: { message: 'no {role} node {where} can be restarted: {reason}', status: 404 },
  ESPRA_ERR_ROLLING_RESTART_TIMEOUT: { message: 'node \'{id}\' timed out in a rolling restart (it did not stop, start again or become healthy in time): {reason}', status: 504 },
  ESPRA_ERR_ALERT_SILENCE_INVALID: { message: 'silence {field} {reason}', status: 400 },
  ESPRA_ERR_ALERT_SILENCE_NOT_FOUND: { message: 'no silence \'{id}\' (it expired or was lifted)', status: 404 },
  ESPRA_ERR_ALERT_INVALID: { message: '{field} {reason}', status: 400 },
  ESPRA_ERR_ALERT_NOT_FOUND: { message: 'no alert {id}', status: 404 },
  // The admin API needs a valid operator token (Authorization: Bearer <token>) or a dashboard session.
  ESPRA_ERR_ADMIN_UNAUTHORIZED: { message: 'unauthorized: {reason}', status: 401 },
  ESPRA_ERR_ADMIN_FORBIDDEN: { message: 'operator {operator} is a viewer and may only read: {method} {path} changes the cluster (operators only)', status: 403 },
  ESPRA_ERR_ADMIN_RATE_LIMITED: { message: 'too many failed authentications from {address}; try again in {retryAfter}s', status: 429 },
  ESPRA_ERR_ADMIN_BAD_REQUEST: { message: '{field}: {reason}', status: 400 },
  ESPRA_ERR_ADMIN_MEDIA_TYPE: { message: 'request bodies must be JSON, sent with Content-Type: application/json (got {got})', status: 415 },
  ESPRA_ERR_ADMIN_BODY_TOO_LARGE: { message: 'the request body is {size} bytes; --admin-max-body allows {limit}', status: 413 },
  ESPRA_ERR_ADMIN_IDEMPOTENCY_MISMATCH: { message: 'Idempotency-Key {key} was used at {at} with another method, path or body', status: 422 },
  ESPRA_ERR_ADMIN_IDEMPOTENCY_IN_PROGRESS: { message: 'a request with Idempotency-Key {key} is still in progress; try again once it has answered', status: 409 },
  ESPRA_ERR_ADMIN_JOB_NOT_FOUND: { message: 'no rolling restart {id}', status: 404 },
  ESPRA_ERR_ADMIN_SEED: { message: 'the admin node has no link to a seed right now', status: 503 },
  ESPRA_ERR_ADMIN_CSRF: { message: 'refused: {reason}', status: 403 },
  ESPRA_ERR_ADMIN_PUSH_NOT_FOUND: { message: 'no build upload {upload} (unknown, past its hour, or abandoned): start again with POST /api/builds', status: 404 },
  ESPRA_ERR_ADMIN_PUSH_NOT_ASKED: { message: 'build upload {upload} did not ask for {hash}: upload only the hashes POST /api/builds answered as missing', status: 409 },
  ESPRA_ERR_ADMIN_PUSH_SIZE: { message: 'the uploaded body is not the size the manifest gives: {reason}', status: 400 },
  ESPRA_ERR_ADMIN_PUSH_CLOSED: { message: 'build upload {upload} was committed as build {build}: follow /api/builds/{build}', status: 409 },
  ESPRA_ERR_ADMIN_PUSH_BUSY: { message: '{what} is being {doing} by another request right now; try again once it has answered', status: 409 },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

/** What an error looks like on the wire (IPC, meta port, HTTP JSON bodies). */
export interface WireError {
  code: string
  message: string
  details?: Record<string, unknown>
}

/** The template of a code, as a literal type. */
export type ErrorTemplate<C extends ErrorCode> = (typeof ERRORS)[C]['message']

/** What {@link createError} takes for a code: one value per placeholder, plus any further details. */
export type ErrorValues<C extends ErrorCode> =
  { readonly [Name in Placeholders<ErrorTemplate<C>>]: PlaceholderValue } & Readonly<Record<string, unknown>>

/** The arguments after the code: values required when the template has placeholders, optional details otherwise. */
export type ErrorArgs<C extends ErrorCode> = [Placeholders<ErrorTemplate<C>>] extends [never]
  ? [details?: Readonly<Record<string, unknown>>]
  : [values: ErrorValues<C>]

/**
 * Raises a coded error in its table sentence: the values fill the template's
 * placeholders and are kept, all of them, as `details`.
 */
export function createError<C extends ErrorCode>(code: C, ...[values]: ErrorArgs<C>): EspraError {
  return new EspraError(code, fillTemplate(ERRORS[code].message, values), values === undefined ? undefined : { ...values })
}

export class EspraError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly details: Record<string, unknown> | undefined

  /**
   * The free-text form, for a message that is not ours to shape (one received
   * from a peer, see {@link fromWire}) and for call sites not yet converted;
   * raise our own errors with {@link createError}. Without a message the
   * template is filled from `details` (a placeholder without a value stays `{name}`).
   */
  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>) {
    super(message ?? fillTemplate(ERRORS[code].message, details))
    this.name = 'EspraError'
    this.code = code
    this.status = ERRORS[code].status
    this.details = details
  }

  toWire(): WireError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details }
  }
}

/** Rebuilds an error received from a peer; unknown codes keep their text. */
export function fromWire(wire: WireError): EspraError {
  const code = (wire.code in ERRORS ? wire.code : 'ESPRA_ERR_INTERNAL') as ErrorCode
  return new EspraError(code, wire.message, wire.details)
}

/** Turns anything thrown into a wire error without leaking stack traces. */
export function toWire(err: unknown): WireError {
  const { code, message, details } = (err ?? {}) as Partial<EspraError>
  if (typeof code === 'string' && code in ERRORS) {
    return details === undefined ? { code, message: String(message) } : { code, message: String(message), details }
  }
  return { code: 'ESPRA_ERR_INTERNAL', message: typeof message === 'string' ? message : String(err) }
}

/**
 * A value a parser or checker refuses. `message` is a short sentence saying
 * what is allowed ("must be a duration such as 10s"); the caller, which knows
 * the option or field, turns it into an `EspraError` naming it. `String(err)`
 * is the sentence alone, so a caller can write it into its own message.
 */
export class InvalidValue extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'InvalidValue'
  }

  override toString(): string {
    return this.message
  }
}
