/**
 * The DNS TXT record that publishes a DKIM key (RFC 6376 section 3.6.1):
 * `<selector>._domainkey.<domain>` with `v=DKIM1; k=rsa; p=<public key>`,
 * derived from the private key the mail node signs with. DNS character
 * strings are at most 255 bytes, so the value is given as several.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto'

export interface DkimRecord {
  readonly name: string
  /** The record's value, whole. */
  readonly value: string
  /** The same split into DNS character strings of at most 255 bytes. */
  readonly strings: string[]
  /** One line for a zone file. */
  readonly zoneLine: string
}

export function dkimRecord(domain: string, selector: string, pem: string): DkimRecord {
  const p = createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' }).toString('base64')
  const value = `v=DKIM1; k=rsa; p=${p}`
  const strings: string[] = []
  for (let i = 0; i < value.length; i += 255) strings.push(value.slice(i, i + 255))
  const name = `${selector}._domainkey.${domain}`
  return { name, value, strings, zoneLine: `${name}. IN TXT ${strings.map((s) => `"${s}"`).join(' ')}` }
}
