/**
 * Numeric error codes of the Live wire protocol, next to the protocol
 * (docs/live-protocol.md, "Errors"). They travel in `err` frames and in the
 * JSON bodies of HTTP answers (`{code, message}` with the HTTP status here).
 */
export const LIVE_ERRORS = {
  BAD_FRAME: { code: 4000, status: 400, message: 'frame is not a valid JSON (or msgpack) object with a string op' },
  UNKNOWN_OP: { code: 4001, status: 400, message: 'unknown op' },
  BAD_CHANNEL: { code: 4002, status: 400, message: 'bad channel name: letters, digits and _ - : . @, 1 to 128 characters' },
  BAD_FIELD: { code: 4003, status: 400, message: 'bad or missing field' },
  TOO_LARGE: { code: 4004, status: 413, message: 'message exceeds the size limit' },
  TOKEN_INVALID: { code: 4010, status: 401, message: 'token missing, malformed or forged' },
  TOKEN_EXPIRED: { code: 4011, status: 401, message: 'token expired' },
  FORBIDDEN: { code: 4030, status: 403, message: 'the token does not allow this on this channel' },
  NOT_SUBSCRIBED: { code: 4040, status: 404, message: 'not subscribed to this channel' },
  ALREADY_SUBSCRIBED: { code: 4090, status: 409, message: 'already subscribed to this channel' },
  TOO_MANY: { code: 4290, status: 429, message: 'too many subscriptions on this connection' },
  UNAVAILABLE: { code: 5030, status: 503, message: 'the channel\'s home node is unreachable; retry' },
  MOVED: { code: 5031, status: 503, message: 'the channel\'s home changed while the request was in flight; retry (a publish id makes a retried publish safe)' },
  INTERNAL: { code: 5000, status: 500, message: 'internal error' },
} as const

export type LiveErrorName = keyof typeof LIVE_ERRORS

/** A coded Live error; `message` may add detail to the table's text. */
export class LiveError extends Error {
  readonly code: number
  readonly status: number
  constructor(name: LiveErrorName, message?: string) {
    super(message ?? LIVE_ERRORS[name].message)
    this.code = LIVE_ERRORS[name].code
    this.status = LIVE_ERRORS[name].status
  }
}

/** WebSocket close codes the server uses. */
export const CLOSE = {
  /** The node is stopping or restarting: reconnect (through the proxy) with `since`. */
  RECONNECT: { code: 1012, reason: 'reconnect' },
  /** Too many errors in a row: the connection is abusive. */
  POLICY: { code: 1008, reason: 'too many errors' },
} as const

/** Maps anything thrown on the Live path to a wire code; unknown errors become INTERNAL. */
export function liveErrorOf(err: unknown): LiveError {
  if (err instanceof LiveError) return err
  const code = (err as { code?: unknown })?.code
  if (code === 'ESPRA_ERR_META_CLOSED' || code === 'ESPRA_ERR_META_TIMEOUT' || code === 'ESPRA_ERR_IPC_TIMEOUT') return new LiveError('UNAVAILABLE')
  const live = typeof code === 'number' ? Object.values(LIVE_ERRORS).find((e) => e.code === code) : undefined
  if (live) return new LiveError((Object.keys(LIVE_ERRORS) as LiveErrorName[]).find((k) => LIVE_ERRORS[k] === live)!, (err as Error).message)
  return new LiveError('INTERNAL')
}
