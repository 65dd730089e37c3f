/**
 * Meta-port authentication (docs/meta-protocol.md, "Handshake"): a
 * challenge/response over HMAC-SHA256 in both directions, so the cluster
 * secret never crosses the wire and each side proves it knows it.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/** The meta protocol version this build speaks. */
export const META_VERSION = 1

/** Length of every handshake nonce in bytes. */
export const NONCE_BYTES = 32

const KEY_LABEL = 'espra-meta-key-v1'
const CLIENT_LABEL = Buffer.from('client\0')
const SERVER_LABEL = Buffer.from('server\0')

/**
 * Derives the meta key from the cluster secret once per process or server,
 * so the raw secret is used in exactly one place.
 */
export function deriveMetaKey(secret: string): Buffer {
  return createHmac('sha256', secret).update(KEY_LABEL).digest()
}

/** A fresh random nonce for one handshake. */
export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES)
}

/** True when `value` is a binary nonce of the right length (as decoded from msgpack). */
export function isNonce(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === NONCE_BYTES
}

/** The peer's proof: `HMAC(key, "client\0" ‖ seedNonce ‖ peerNonce)`. */
export function clientProof(key: Buffer, seedNonce: Uint8Array, peerNonce: Uint8Array): Buffer {
  return createHmac('sha256', key).update(CLIENT_LABEL).update(seedNonce).update(peerNonce).digest()
}

/** The seed's proof: `HMAC(key, "server\0" ‖ peerNonce ‖ seedNonce)`. */
export function serverProof(key: Buffer, peerNonce: Uint8Array, seedNonce: Uint8Array): Buffer {
  return createHmac('sha256', key).update(SERVER_LABEL).update(peerNonce).update(seedNonce).digest()
}

/**
 * Compares a received proof with the expected one in constant time. Anything
 * that is not a byte string of the expected length fails without comparing.
 */
export function proofMatches(expected: Buffer, received: unknown): boolean {
  if (!(received instanceof Uint8Array) || received.length !== expected.length) return false
  return timingSafeEqual(expected, received)
}
