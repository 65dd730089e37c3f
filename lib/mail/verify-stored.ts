/**
 * Verifies a stored inbound message after its 250, as the mail node would
 * have at the end of DATA: the app node's handoff runs it over the raw
 * message it reads from the blob store (or the datastore record of a small
 * one) when the task says so (`verify`: the mail node's timeout, DNS servers
 * and host name), with the envelope's client address, HELO name and MAIL
 * FROM. A handoff that runs again (a retry, a crash) verifies again: nothing
 * of it is kept in between. docs/mail.md, "Authentication".
 */
import type { Readable } from 'node:stream'
import type { DNSResolver } from 'mailauth'
import type { BlobStore } from '../storage/blob-store.js'
import type { Datastore } from '../storage/datastore.js'
import type { MailTaskPayload } from './inbound.js'
import type { HandoffVerification, MailAuthResults } from './inbound-auth.js'
import { createMailVerifier, dnsResolver, unverified } from './mail-auth.js'
import { readInboundRaw } from './parse-message.js'

export interface VerifyStoredOptions {
  /** The lookups (tests pass their own records); by default the DNS servers `verify` names, or the system's. */
  readonly resolver?: DNSResolver
  /** Told when verification itself failed to run (its results are then temperror). */
  readonly onError?: (err: unknown) => void
}

/** Resolves once `stream` is over, whoever reads it (ended, closed or failed). */
function over(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    stream.once('end', resolve)
    stream.once('close', resolve)
    stream.once('error', () => resolve())
  })
}

/**
 * The message's results: they are waited for at most `verify.timeoutMs` once
 * its raw bytes are read, then every result is `temperror`. Rejects only as
 * reading the raw message does (`ESPRA_ERR_MAIL_HANDOFF`: it is gone).
 */
export async function verifyStoredMessage(stores: { blobs: BlobStore; datastore: Pick<Datastore, 'get'> }, payload: MailTaskPayload, verify: HandoffVerification, opts: VerifyStoredOptions = {}): Promise<MailAuthResults> {
  let resolver: DNSResolver
  try {
    resolver = opts.resolver ?? dnsResolver(verify.dnsServers, verify.timeoutMs)
  } catch (err) {
    opts.onError?.(err)
    return unverified(`the DNS servers ${verify.dnsServers.join(', ')} are not usable: ${(err as Error)?.message ?? String(err)}`)
  }
  const raw = await readInboundRaw(stores, payload)
  const read = over(raw)
  const verifier = createMailVerifier({ resolver, timeoutMs: verify.timeoutMs, mta: verify.mta, ...(opts.onError === undefined ? {} : { onError: opts.onError }) })
  const pending = verifier.start(raw, { ip: payload.envelope.remoteAddress, helo: payload.envelope.helo, sender: payload.envelope.from })
  await read
  return pending.results()
}
