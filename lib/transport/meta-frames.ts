/**
 * The meta protocol's frames as values (docs/meta-protocol.md): one-way
 * messages encoded once for many sessions, answers, the errors a peer sends,
 * and the checks on what a frame carries. The session that reads and writes
 * them is meta-session.ts.
 */
import { encodeFrame } from '../codec/frame.js'
import { createError, EspraError, fromWire, toWire } from '../core/errors.js'
import { isMap } from './meta-shapes.js'

export const protocolError = (reason: string) => createError('ESPRA_ERR_META_PROTOCOL', { reason })
export const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
/** A peer's text cut to 64 characters for an error message. */
export const clip = (s: string) => (s.length > 64 ? `${s.slice(0, 64)}…` : s)
/** Whether a one-way message's epoch is one (a non-negative safe integer). */
export const isEpoch = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/**
 * A one-way message encoded once for many sessions ({@link MetaSession.sendEncoded}):
 * once without an epoch, once per epoch stamped on it (one in practice).
 */
export class MessageFrame {
  private plain: Buffer | null = null
  private stamped: { epoch: number; frame: Buffer } | null = null
  constructor(readonly op: string, readonly body: unknown) {}

  bytes(epoch?: number): Buffer {
    if (epoch === undefined) return (this.plain ??= encodeFrame({ t: 'msg', op: this.op, body: this.body }))
    if (this.stamped?.epoch !== epoch) this.stamped = { epoch, frame: encodeFrame({ t: 'msg', op: this.op, body: this.body, e: epoch }) }
    return this.stamped.frame
  }
}

/** Encodes a one-way message once, for writing to many sessions with {@link MetaSession.sendEncoded}. */
export function encodeMessage(op: string, body: unknown): MessageFrame {
  return new MessageFrame(op, body)
}


/** The frame answering request `id`: its body (an empty map for undefined), or the error when `ok` is false. */
export function answerFrame(id: number, payload: unknown, ok: boolean): Buffer {
  return encodeFrame(ok ? { t: 'res', id, ok: true, body: payload === undefined ? {} : payload } : { t: 'res', id, ok: false, err: toWire(payload) })
}

/** The error an `error` frame from the peer carries (the peer closes the connection after it). */
export function peerError(value: Record<string, unknown>): EspraError {
  return typeof value['code'] === 'string' && typeof value['message'] === 'string'
    ? fromWire({ code: value['code'], message: `peer said: ${clip(value['message'])}` })
    : protocolError('peer sent a malformed error')
}

/** The error a failed answer (`ok: false`) carries. */
export function answerError(err: unknown): EspraError {
  return isMap(err) && typeof err['code'] === 'string' && typeof err['message'] === 'string'
    ? fromWire({ code: err['code'], message: err['message'], ...(isMap(err['details']) ? { details: err['details'] } : {}) })
    : protocolError('peer answered with a malformed error')
}
