/**
 * `espra-node admin mail send|show|queue|…`: outbound mail from the command
 * line, over the seed's meta port (the datastore and the outbound queue, or
 * Redis with `--redis`). docs/mail.md, "Outbound".
 */
import { createError, EspraError } from '../../core/errors.js'
import { createLogger } from '../../core/log.js'
import { redisUrl } from '../../core/options-tasks.js'
import { readFileSync } from 'node:fs'
import { durationIn } from '../../core/config-parsers.js'
import { checkMailOut, dkimList } from '../../core/options-mail-out.js'
import { dkimRecord } from '../../mail/dkim-record.js'
import { checkOutMessage, composeOutMessage, newOutId, normalAddress, OUT_ID, recipientsByDomain } from '../../mail/outbound.js'
import { controlOutbound, type ControlAction } from '../../mail/outbound-control.js'
import { enqueueOutbound, outStatus, readOutRecord, type OutRecord } from '../../mail/outbound-store.js'
import { listSuppressions, suppress, unsuppress } from '../../mail/suppression.js'
import { listAll } from '../../storage/datastore.js'
import { openOutboundQueue } from '../../mail/outbound-queue.js'
import { createDatastoreClient } from '../../storage/datastore-client.js'
import type { Datastore } from '../../storage/datastore.js'
import type { TaskQueue } from '../../tasks/queue.js'
import { connect, type ConnectOptions } from './cli.js'

export interface MailOutOptions extends ConnectOptions {
  redis?: string
}

const usage = (option: string, message: string): EspraError => createError('ESPRA_ERR_CONFIG_INVALID', { option, reason: message })

/** The datastore and outbound queue of the cluster the options name. */
export async function openOutbound(opts: MailOutOptions): Promise<{ datastore: Datastore; queue: TaskQueue; close(): Promise<void> }> {
  const url = opts.redis ?? (process.env['ESPRA_REDIS'] || undefined)
  let redis: string | null = null
  if (url !== undefined) {
    try {
      redis = redisUrl(url)
    } catch (reason) {
      throw usage('--redis', String(reason))
    }
  }
  const client = await connect(opts)
  const queue = await openOutboundQueue(redis, createLogger('silent', { role: 'admin-cli', node: 'cli' }), client)
  return { datastore: createDatastoreClient(client), queue, close: async () => void (await Promise.all([queue.close(), client.close()])) }
}

/** A field error of the message, in the words of the command line. */
function asUsage(err: unknown): unknown {
  const e = err as EspraError
  if (e.code !== 'ESPRA_ERR_MAIL_INVALID' && e.code !== 'ESPRA_ERR_MAIL_HEADER_INJECTION') return err
  const field = String((e.details as { field?: string } | undefined)?.field ?? '')
  const option = `--${field.replace(/\[.*$/, '').replace(/\..*$/, '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
  // Free text: the checker's own message (its code kept), with the option it came from added.
  return new EspraError(e.code, `${option}: ${e.message}`, { ...(e.details as object), option })
}

export async function adminMailSend(opts: MailOutOptions & { from?: string; to?: string; cc?: string; bcc?: string; subject?: string; text?: string; html?: string }): Promise<void> {
  if (opts.from === undefined) throw usage('--from', 'is required (the sender address)')
  if (opts.to === undefined && opts.cc === undefined && opts.bcc === undefined) throw usage('--to', 'is required (recipient addresses, comma-separated)')
  if (opts.text !== undefined && opts.html !== undefined) throw usage('--html', 'give --text or --html, not both')
  let m
  try {
    m = checkOutMessage({ from: opts.from, to: opts.to, cc: opts.cc, bcc: opts.bcc, subject: opts.subject, text: opts.text ?? (opts.html === undefined ? '' : undefined), html: opts.html })
  } catch (err) {
    throw asUsage(err)
  }
  const id = newOutId()
  const { raw, messageId } = await composeOutMessage(m, id, async () => null)
  const out = await openOutbound(opts)
  try {
    const queued = await enqueueOutbound({ datastore: out.datastore, queue: out.queue, blobs: null }, { id, from: m.from.address, rcptsByDomain: recipientsByDomain(m), raw, subject: m.subject, messageId, kind: 'message' })
    process.stdout.write(`${queued}\n`)
  } finally {
    await out.close()
  }
}

const iso = (ms: number | null | undefined): string => (typeof ms === 'number' ? new Date(ms).toISOString() : '-')

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n')
}

function checkOutId(id: string): string {
  if (!OUT_ID.test(id)) throw usage('<id>', `must be an outbound message id such as o${Date.now().toString(36)}0123456789ab (got ${JSON.stringify(id.slice(0, 40))})`)
  return id
}

/** `admin mail show <id>`: the message, each domain's state and the whole timeline. */
export function formatOutRecord(r: OutRecord): string {
  const lines = [
    `message   ${r.id} (${outStatus(r)})`,
    `from      ${r.from === '' ? '<> (null sender)' : r.from}${r.kind !== 'message' ? `  [${r.kind} notice]` : ''}`,
    `subject   ${r.subject}`,
    `id        <${r.messageId}>, ${r.size} bytes, queued ${iso(r.at)}`,
    '',
    table([['DOMAIN', 'STATE', 'ATTEMPTS', 'NEXT', 'PENDING', 'DELIVERED', 'FAILED'], ...Object.entries(r.domains).map(([domain, d]) => [
      domain, d.state, String(d.attempts), d.state === 'done' ? '-' : iso(d.next), d.pending.join(',') || '-', d.delivered.join(',') || '-', d.failed.join(',') || '-',
    ])]),
    '',
    ...(r.eventsDropped > 0 ? [`(${r.eventsDropped} older events not kept)`] : []),
    table([['TIME', 'EVENT', 'DOMAIN', 'RECIPIENTS', 'DETAIL'], ...r.events.map((e) => [
      iso(e.at), e.type, e.domain ?? '-', (e.rcpts ?? []).join(',') || '-', `${e.detail ?? ''}${e.next !== undefined ? ` (next attempt ${iso(e.next)})` : ''}`,
    ])]),
  ]
  return lines.join('\n')
}

export async function adminMailShow(id: string, opts: MailOutOptions & { json?: boolean }): Promise<void> {
  checkOutId(id)
  const out = await openOutbound(opts)
  try {
    const r = await showOutbound(out.datastore, id)
    process.stdout.write(opts.json ? `${JSON.stringify(r)}\n` : `${formatOutRecord(r)}\n`)
  } finally {
    await out.close()
  }
}

export const OUT_STATUSES = ['queued', 'deferred', 'held', 'failed', 'delivered', 'dropped'] as const
export type OutStatusName = (typeof OUT_STATUSES)[number]

/** The outbound messages whose status is one of `wanted`, in key order (`admin mail queue`, `GET /api/mail/queue`). */
export async function listOutbound(datastore: Datastore, wanted: ReadonlySet<string>): Promise<OutRecord[]> {
  const rows: OutRecord[] = []
  for await (const e of listAll(datastore, 'mailOutbound', 'out/')) {
    const r = e.value as unknown as OutRecord
    if (wanted.has(outStatus(r))) rows.push(r)
  }
  return rows
}

/** One row of `admin mail queue --json`. */
export const outSummary = (r: OutRecord) => ({ id: r.id, status: outStatus(r), from: r.from, subject: r.subject, at: r.at, domains: r.domains })

/** One outbound message with its timeline; `ESPRA_ERR_MAIL_NOT_FOUND` when there is none. */
export async function showOutbound(datastore: Datastore, id: string): Promise<OutRecord> {
  const r = await readOutRecord(datastore, id)
  if (r === null) throw createError('ESPRA_ERR_MAIL_NOT_FOUND', { what: 'outbound message', id, hint: 'admin mail queue lists them' })
  return r
}

/** retry, hold, release or drop one outbound message; answers its new status. */
export async function controlOut(deps: { datastore: Datastore; queue: TaskQueue }, id: string, action: ControlAction): Promise<{ id: string; status: string }> {
  const r = await controlOutbound(deps, id, action)
  return { id: r.id, status: outStatus(r) }
}

export async function adminMailQueue(opts: MailOutOptions & { deferred?: boolean; failed?: boolean; held?: boolean; all?: boolean; json?: boolean }): Promise<void> {
  const wanted = new Set<string>(opts.all ? ['queued', 'deferred', 'held', 'failed', 'delivered', 'dropped'] : [
    ...(opts.deferred ? ['deferred'] : []), ...(opts.failed ? ['failed'] : []), ...(opts.held ? ['held'] : []),
  ])
  if (wanted.size === 0) for (const s of ['queued', 'deferred', 'held']) wanted.add(s)
  const out = await openOutbound(opts)
  try {
    const rows = await listOutbound(out.datastore, wanted)
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(rows.map(outSummary))}\n`)
      return
    }
    if (rows.length === 0) {
      process.stdout.write(`(no ${[...wanted].join(', ')} outbound messages)\n`)
      return
    }
    process.stdout.write(`${table([['ID', 'STATUS', 'QUEUED', 'FROM', 'PENDING', 'NEXT', 'LAST ANSWER'], ...rows.map((r) => {
      const open = Object.values(r.domains).filter((d) => d.state !== 'done')
      const next = open.map((d) => d.next ?? Infinity).reduce((a, b) => Math.min(a, b), Infinity)
      return [r.id, outStatus(r), iso(r.at), r.from || '<>', String(open.reduce((n, d) => n + d.pending.length, 0)), Number.isFinite(next) ? iso(next) : '-',
        (open.find((d) => d.last !== null)?.last ?? r.events.at(-1)?.detail ?? '').replace(/\s+/g, ' ').slice(0, 120)]
    })])}\n`)
  } finally {
    await out.close()
  }
}

export async function adminMailControl(action: ControlAction, id: string, opts: MailOutOptions): Promise<void> {
  checkOutId(id)
  const out = await openOutbound(opts)
  try {
    const r = await controlOut(out, id, action)
    process.stdout.write(`${r.id} ${r.status}\n`)
  } finally {
    await out.close()
  }
}

export async function adminSuppressionLs(opts: MailOutOptions & { json?: boolean }): Promise<void> {
  const out = await openOutbound(opts)
  try {
    const list = await listSuppressions(out.datastore)
    if (opts.json) return void process.stdout.write(`${JSON.stringify(list)}\n`)
    process.stdout.write(list.length === 0 ? '(no suppressed addresses)\n'
      : `${table([['ADDRESS', 'SINCE', 'UNTIL', 'MESSAGE', 'REASON'], ...list.map((s) => [s.address, iso(s.at), iso(s.until), s.message, s.reason.replace(/\s+/g, ' ').slice(0, 120)])])}\n`)
  } finally {
    await out.close()
  }
}

export async function adminSuppressionAdd(address: string, opts: MailOutOptions & { reason?: string; ttl?: string }): Promise<void> {
  const normal = normalAddress(address.trim())
  if (normal === null || /[\r\n]/.test(address)) throw usage('<address>', `must be an address local@domain (got ${JSON.stringify(address.slice(0, 80))})`)
  let ttlMs: number
  try {
    ttlMs = durationIn(1000, 8760 * 3_600_000)(opts.ttl ?? '720h')
  } catch (reason) {
    throw usage('--ttl', String(reason))
  }
  const out = await openOutbound(opts)
  try {
    const s = await suppress(out.datastore, normal, { reason: opts.reason ?? 'added by an operator', message: 'admin', ttlMs })
    process.stdout.write(`${s.address} suppressed until ${iso(s.until)}\n`)
  } finally {
    await out.close()
  }
}

export async function adminSuppressionRm(address: string, opts: MailOutOptions): Promise<void> {
  const out = await openOutbound(opts)
  try {
    if (!(await unsuppress(out.datastore, address.trim()))) throw createError('ESPRA_ERR_MAIL_NOT_FOUND', { what: 'suppression of', id: address.trim().toLowerCase(), hint: 'admin mail suppression ls lists them' })
    process.stdout.write(`${address.trim().toLowerCase()} no longer suppressed\n`)
  } finally {
    await out.close()
  }
}

/** `admin mail dkim-record <domain>`: the TXT record to publish for the key `--dkim` (or ESPRA_DKIM, as the mail nodes run with) names for `domain`. */
export async function adminMailDkimRecord(domain: string, opts: { dkim?: string; json?: boolean }): Promise<void> {
  const raw = opts.dkim ?? process.env['ESPRA_DKIM']
  if (raw === undefined || raw === '') throw usage('--dkim', 'is required: domain:selector:keyfile, as the mail nodes run with (or set ESPRA_DKIM)')
  let keys
  try {
    keys = dkimList(raw)
  } catch (reason) {
    throw usage('--dkim', String(reason))
  }
  const key = keys.find((k) => k.domain === domain.toLowerCase().replace(/\.$/, ''))
  if (key === undefined) throw usage('<domain>', `no key for ${domain} in --dkim (it names ${keys.map((k) => k.domain).join(', ') || 'none'})`)
  checkMailOut({ role: 'mail', dkim: [key] })
  const record = dkimRecord(key.domain, key.selector, readFileSync(key.keyFile, 'utf8'))
  process.stdout.write(opts.json ? `${JSON.stringify(record)}\n` : `${record.zoneLine}\n`)
}
