// The sample app's server code: the contract of docs/app-api.md and nothing else.
// `espra-node up` pushes this directory as the first build; docs/cli.md "The sample app" walks through it.
import { page } from './page.js'

const CHAT = 'chat:lobby'
const MAX_NAME = 32
const MAX_UPLOAD = 10 * 1024 * 1024
let ctx

export function init(c) {
  ctx = c
}

const json = (status, value) => ({ status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body: JSON.stringify(value) })

// The settings `up` gives the app (--app-settings): where browsers reach the build's public files on the
// fileserver (assets), uploads and uploaded files (files: a host of their own, so an upload is never a page
// of this app's origin), and the live host.
function urls() {
  const s = ctx.config.settings
  const files = String(s.filesUrl ?? '')
  return { assets: String(s.assetsUrl ?? files), files, live: String(s.liveUrl ?? '') }
}

// Progress of the upload goes to the uploader's own channel; the fileserver checks size and use.
const uploadToken = (user) => ctx.mintUploadToken({ maxSize: MAX_UPLOAD, ttlMs: 600_000, owner: user, channel: `upload:${user}` })

export async function handle(req) {
  if (req.method === 'GET' && req.path === '/') {
    const visits = ((await ctx.tables.get('stats', 'visits')) ?? 0) + 1
    await ctx.tables.set('stats', 'visits', visits)
    const shared = (await ctx.tables.list('shared', { limit: 20 })).rows.map((r) => r.value)
    const mail = (await ctx.tables.list('mail', { limit: 10 })).rows.map((r) => r.value)
    const mailEvents = (await ctx.tables.list('mail_events', { limit: 20 })).rows.map((r) => r.value)
    return { headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }, body: page({ visits, shared, mail, mailEvents, urls: urls(), build: ctx.config.build, node: ctx.config.nodeId }) }
  }
  if (req.method === 'POST' && req.path === '/api/session') {
    let name
    try {
      name = String(req.json().name ?? '').trim()
    } catch {
      return json(400, { error: 'the body must be JSON: {"name": "..."}' })
    }
    if (!/^[\p{L}\p{N} _.-]{1,32}$/u.test(name) || name.length > MAX_NAME) return json(400, { error: `a name is 1 to ${MAX_NAME} letters, digits, spaces, _ . or -` })
    const user = `${name.replace(/[^A-Za-z0-9_-]/g, '_')}-${Math.random().toString(36).slice(2, 8)}`
    const progress = `upload:${user}`
    const live = ctx.mintToken({ sub: [CHAT, progress], pub: [CHAT], presence: [CHAT], ttlMs: 3_600_000, user, info: { name } })
    return json(200, { user, name, chat: CHAT, progress, live, upload: await uploadToken(user), urls: urls() })
  }
  if (req.method === 'POST' && req.path === '/api/upload-token') {
    // Upload tokens work once: the page asks for a fresh one before each upload.
    const user = req.searchParams.get('user') ?? ''
    if (!/^[A-Za-z0-9_-]{1,48}$/.test(user)) return json(400, { error: 'user must be the id /api/session gave' })
    return json(200, { upload: await uploadToken(user) })
  }
  if (req.method === 'POST' && req.path === '/api/shared') {
    // The page reports a finished upload; the announcement is background work.
    let body
    try {
      body = req.json()
    } catch {
      return json(400, { error: 'the body must be JSON' })
    }
    const { key, filename, size, name } = body ?? {}
    if (typeof key !== 'string' || !/^files\/[0-9a-f]{64}$/.test(key) || typeof name !== 'string' || name.length > MAX_NAME || !Number.isInteger(size)) {
      return json(400, { error: 'expected {key: "files/<sha256>", filename, size, name}' })
    }
    const id = await ctx.enqueue('announce-upload', { key, filename: String(filename ?? 'a file').slice(0, 200), size, name })
    return json(202, { task: id })
  }
  if (req.method === 'POST' && req.path === '/api/mail') return sendNote(req)
  return { status: 404, headers: { 'content-type': 'text/plain' }, body: 'not found\n' }
}

// Background work (the task queue): remember the file and tell the chat about it.
export async function handleTask(task) {
  if (task.name !== 'announce-upload') throw new Error(`unknown task ${task.name}`)
  const { key, filename, size, name } = task.payload
  const url = `${urls().files}/f/${key}`
  await ctx.tables.set('shared', `${Date.now()}-${key.slice(-8)}`, { filename, size, name, url }, 24 * 3_600_000)
  await ctx.publish(CHAT, { system: true, text: `${name} shared ${filename} (${size} bytes)`, url })
}

// Inbound mail (the mail role, docs/mail.md): `up` makes localhost a mail domain, so mail to anyone@localhost
// lands here. Keyed by the message id (a retried handoff writes the same row), newest first, kept a day.
export async function handleMail(message) {
  const key = `${String(1e13 - message.receivedAt).padStart(13, '0')}-${message.id}`
  await ctx.tables.set('mail', key, {
    id: message.id,
    from: message.from || message.envelope.from,
    to: message.envelope.to.join(', '),
    subject: message.subject.slice(0, 200),
    text: (message.text ?? '').slice(0, 500),
    attachments: message.attachments.length,
    at: message.receivedAt,
  }, 24 * 3_600_000)
}

// Outbound mail (docs/mail.md, "Outbound"): a note sent with ctx.sendMail. Under `up` the mail node relays it
// into the cluster's own SMTP port, so a note to anyone@localhost comes back through handleMail above.
async function sendNote(req) {
  let body
  try {
    body = req.json()
  } catch {
    return json(400, { error: 'the body must be JSON: {"to": "...", "subject": "...", "text": "..."}' })
  }
  try {
    const id = await ctx.sendMail({ from: 'sample-app@localhost', to: body?.to, subject: String(body?.subject ?? 'A note from the sample app'), text: String(body?.text ?? '') })
    return json(202, { id })
  } catch (err) {
    // Bad addresses and header injection are refused at once with a coded error.
    return json(400, { error: err.message, code: err.code })
  }
}

// What became of the notes: the mail nodes report every step (queued, delivered, bounced, ...), kept a day.
export async function handleMailEvent(event) {
  await ctx.tables.set('mail_events', `${event.message}-${event.at}-${event.type}`, { message: event.message, type: event.type, rcpts: (event.rcpts ?? []).join(', '), detail: String(event.detail ?? '').slice(0, 200), at: event.at }, 24 * 3_600_000)
}
