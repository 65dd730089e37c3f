/**
 * What keeps an uploaded file passive when it is served back (`/f/files/…`):
 * anyone with an upload token chooses its bytes and its `Content-Type`, so an
 * upload must never run as a page of an origin the app uses.
 *
 * - `X-Content-Type-Options: nosniff`: the browser takes the type as stored,
 *   never guesses "HTML" from the bytes.
 * - `Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline';
 *   sandbox`: even opened as a page, the file runs no script, loads nothing
 *   and has an opaque origin (no cookies, no storage of any origin).
 * - `Content-Disposition: attachment` for every type that is not known to be
 *   passive (HTML, SVG, XML, PDF, JavaScript, anything unknown or malformed),
 *   unless the upload token said `inline`; passive types (raster images,
 *   audio, video, fonts, plain text, CSV, JSON) are `inline`.
 *
 * The files host (`--files-host`) adds the last layer: uploads are served on
 * a host of their own, never on the one that serves the app's pages.
 */

/** Sent with every uploaded file. */
export const UPLOAD_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"

const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/
const PASSIVE_EXACT = new Set(['text/plain', 'text/csv', 'application/json', 'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp', 'image/x-icon', 'image/vnd.microsoft.icon'])
const PASSIVE_TOP = new Set(['audio', 'video', 'font'])

/** Whether a browser shows `type` without running anything of it (parameters ignored; anything malformed is not). */
export function isPassiveType(type: string): boolean {
  const base = type.split(';')[0]!.trim().toLowerCase()
  if (!MEDIA_TYPE.test(base)) return false
  if (PASSIVE_EXACT.has(base)) return true
  const [top, sub] = base.split('/') as [string, string]
  return PASSIVE_TOP.has(top) && !sub.endsWith('+xml')
}

/** A `filename*` parameter (RFC 6266 / 8187): the name percent-encoded as UTF-8, nothing a header could be split on. */
function filenameParam(filename: string): string {
  return `; filename*=UTF-8''${encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`
}

/** The `Content-Disposition` of an uploaded file: `attachment` unless its type is passive or its token allowed `inline`. */
export function uploadDisposition(type: string, inline: boolean, filename: string | null): string {
  const kind = inline || isPassiveType(type) ? 'inline' : 'attachment'
  return filename === null || filename === '' ? kind : `${kind}${filenameParam(filename)}`
}

/** Blob-store metadata of an upload that its answer needs (S3 metadata is ASCII: the file name travels percent-encoded). */
export function uploadMetadata(inline: boolean, filename: string | null): Record<string, string> {
  return {
    ...(inline ? { inline: 'true' } : {}),
    ...(filename !== null && filename !== '' ? { filename: encodeURIComponent(filename) } : {}),
  }
}

/** The other way: what {@link uploadMetadata} stored (absent or damaged: not inline, no name). */
export function readUploadMetadata(metadata: Readonly<Record<string, string>> | undefined): { inline: boolean; filename: string | null } {
  let filename: string | null = null
  try {
    if (metadata?.['filename'] !== undefined) filename = decodeURIComponent(metadata['filename'])
  } catch {
    filename = null
  }
  return { inline: metadata?.['inline'] === 'true', filename }
}
