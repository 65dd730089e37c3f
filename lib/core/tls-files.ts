/**
 * A certificate and its private key, read from the files `--tls-cert` and
 * `--tls-key` name and checked together. The parent reads them once while it
 * validates the config (a bad file is a one-line start-up error naming the
 * option); each child reads them again when it starts, so a SIGHUP reload
 * picks up renewed files.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createError } from './errors.js'

export interface TlsFiles {
  /** PEM: the certificate, then any chain. */
  readonly cert: Buffer
  readonly key: Buffer
}

function invalid(option: string, reason: string): never {
  throw createError('ESPRA_ERR_CONFIG_INVALID', { option, reason })
}

function read(option: string, file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    return invalid(option, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

/** Reads and checks both files; throws `ESPRA_ERR_CONFIG_INVALID` naming the option at fault. */
export function readTlsFiles(certFile: string, keyFile: string): TlsFiles {
  const cert = read('--tls-cert', certFile)
  const key = read('--tls-key', keyFile)
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert)
  } catch {
    return invalid('--tls-cert', `${certFile} holds no PEM certificate`)
  }
  let privateKey: ReturnType<typeof createPrivateKey>
  try {
    privateKey = createPrivateKey(key)
  } catch {
    return invalid('--tls-key', `${keyFile} holds no unencrypted PEM private key`)
  }
  if (!x509.checkPrivateKey(privateKey)) invalid('--tls-key', `${keyFile} is not the key of the certificate in ${certFile}`)
  return { cert, key }
}
