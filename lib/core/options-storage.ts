/** Storage options: which blob store, and where. */
import { resolve } from 'node:path'
import { constant, oneOf, option, type OptionArea, text } from './config-parsers.js'

export const BLOB_STORES = ['local', 's3'] as const
export type BlobStoreKind = (typeof BLOB_STORES)[number]

export const STORAGE_OPTIONS = [
  option({
    key: 'blobStore', flag: '--blob-store <kind>', env: 'ESPRA_BLOB_STORE', defaultText: 'local',
    doc: `where files and builds are stored: ${BLOB_STORES.join(', ')} (s3 needs --s3-bucket)`,
    details: 'where files and builds are stored: `local` (a directory) or `s3` (needs `--s3-bucket`)',
    parse: oneOf(BLOB_STORES),
  }),
  option({
    key: 'blobDir', flag: '--blob-dir <dir>', env: 'ESPRA_BLOB_DIR', defaultText: '<data-dir>/blobs',
    doc: 'directory of the local blob store',
    default: (c) => resolve(String(c['dataDir']), 'blobs'), parse: (raw) => resolve(text(/^.{1,4096}$/, 'a directory path')(raw)),
  }),
  option({
    key: 's3Bucket', flag: '--s3-bucket <name>', env: 'ESPRA_S3_BUCKET', defaultText: '(none)',
    doc: 'bucket of the s3 blob store',
    default: constant(null),
    parse: text(/^(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name: 3 to 63 lower-case letters, digits, "." and "-"'),
  }),
  option({
    key: 's3Region', flag: '--s3-region <region>', env: 'ESPRA_S3_REGION', defaultText: 'us-east-1',
    doc: 'region of the S3 bucket',
    parse: text(/^[a-z0-9][a-z0-9-]{0,31}$/, 'a region name such as eu-west-1'),
  }),
  option({
    key: 's3Endpoint', flag: '--s3-endpoint <url>', env: 'ESPRA_S3_ENDPOINT', defaultText: '(AWS)',
    doc: 'an S3-compatible service instead of AWS, http(s)://host[:port], addressed path style',
    default: constant(null),
    parse: (raw) => text(/^https?:\/\/[^\s/?#@]+\/?$/, 'an http(s)://host[:port] URL')(raw).replace(/\/$/, ''),
  }),
] as const

export const STORAGE_AREA: OptionArea<typeof STORAGE_OPTIONS> = { heading: 'Blob store', options: STORAGE_OPTIONS }
