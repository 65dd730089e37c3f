/**
 * What a Live child and its parent say to each other (role IPC), and what
 * Live parents say to each other over the internal link. Answers that can
 * fail carry `{err: {code, message}}` with a Live code (roles/live/errors.ts)
 * rather than throwing, so the numeric code survives every hop.
 */
import type { Catchup, Gap } from './channel-history.js'
import type { HubEvent, Member } from './hub.js'

export type ChildRequest =
  | { k: 'sub'; ch: string; since?: number }
  | { k: 'hist'; ch: string; since?: number; limit: number }
  | { k: 'pub'; ch: string; data: unknown; id?: string }
  | { k: 'presence'; ch: string }

export type ChildMessage =
  | { k: 'unsub'; ch: string }
  | { k: 'join'; ch: string; member: Member }
  | { k: 'leave'; ch: string; user: string }

/** Parent → children: hub events, and `reset` when a channel's stream restarted (home moved or lost its history). */
export type ParentMessage = HubEvent | { k: 'reset'; ch: string; seq: number; gap?: Gap }

export interface WireFailure {
  err: { code: number; message: string }
}

export type SubAnswer = Catchup | WireFailure
export type PubAnswer = { seq: number; ts: number } | WireFailure
export type PresenceAnswer = { count: number; members: Member[] } | WireFailure

export function isFailure(answer: unknown): answer is WireFailure {
  return typeof answer === 'object' && answer !== null && 'err' in answer
}
