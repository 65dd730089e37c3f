// The sample app's browser side: a chat with presence over the Live role (through the proxy),
// and an upload whose progress arrives on the uploader's live channel.
/* global ESPRA */
(() => {
  const $ = (id) => document.getElementById(id)
  let session = null
  let ws = null
  let nextId = 1
  const members = new Map()

  function line(html) {
    const li = document.createElement('li')
    li.innerHTML = html
    $('messages').appendChild(li)
    li.scrollIntoView({ block: 'nearest' })
  }
  const text = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

  function showMembers() {
    $('online').textContent = String(members.size)
    $('members').textContent = [...members.values()].join(', ')
  }

  function send(frame) {
    ws.send(JSON.stringify({ id: nextId++, ...frame }))
  }

  function onFrame(f) {
    if (f.op === 'msg' && f.ch === session.chat) {
      const d = f.data ?? {}
      if (d.system) line(`<em>${text(d.text)}</em> <a href="${text(d.url)}">open</a>`)
      else line(`<b>${text(d.name)}</b>: ${text(d.text)}`)
    } else if (f.op === 'msg' && f.ch === session.progress) {
      onUploadEvent(f.data ?? {})
    } else if (f.op === 'presence' && f.ch === session.chat) {
      for (const m of f.members ?? []) members.set(m.user, m.info?.name ?? m.user)
      for (const m of f.joins ?? []) members.set(m.user, m.info?.name ?? m.user)
      for (const u of f.leaves ?? []) members.delete(u)
      showMembers()
    } else if (f.op === 'err') {
      line(`<em>error ${text(f.code)}: ${text(f.message)}</em>`)
    }
  }

  function connect() {
    ws = new WebSocket(`${ESPRA.live}/ws?token=${encodeURIComponent(session.live)}`)
    ws.onopen = () => {
      $('room').dataset.connected = 'true'
      send({ op: 'sub', ch: session.chat })
      send({ op: 'sub', ch: session.progress })
      send({ op: 'presence', ch: session.chat })
    }
    ws.onmessage = (e) => onFrame(JSON.parse(e.data))
    // The Live node went away or the proxy closed us: come back; `since` recovery is in docs/live-protocol.md.
    ws.onclose = () => {
      $('room').dataset.connected = 'false'
      setTimeout(connect, 1000)
    }
  }

  $('join').addEventListener('submit', async (e) => {
    e.preventDefault()
    const res = await fetch('/api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: $('name').value }) })
    const body = await res.json()
    if (!res.ok) return alert(body.error)
    session = body
    $('join').hidden = true
    $('room').hidden = false
    connect()
  })

  $('say').addEventListener('submit', (e) => {
    e.preventDefault()
    const value = $('text').value.trim()
    if (!value || !ws || ws.readyState !== WebSocket.OPEN) return
    send({ op: 'pub', ch: session.chat, data: { name: session.name, text: value } })
    $('text').value = ''
  })

  // The form posts straight to the fileserver (into a hidden frame); progress comes back over Live.
  let uploading = null
  $('upload').addEventListener('submit', async (e) => {
    e.preventDefault()
    const file = $('file').files[0]
    if (!file || uploading) return
    const res = await fetch(`/api/upload-token?user=${encodeURIComponent(session.user)}`, { method: 'POST' })
    const { upload } = await res.json()
    uploading = file
    $('progress').value = 0
    $('progress-text').textContent = 'starting'
    const form = $('upload')
    form.action = `${ESPRA.files}/upload?token=${encodeURIComponent(upload)}`
    form.submit()
  })

  async function onUploadEvent(ev) {
    if (!uploading) return
    if (ev.t === 'upload.progress') {
      const pct = Math.min(100, Math.round((ev.bytes / uploading.size) * 100))
      $('progress').value = pct
      $('progress-text').textContent = `${pct}%`
    } else if (ev.t === 'upload.done') {
      $('progress').value = 100
      $('progress-text').textContent = ev.pending ? 'stored (pending)' : 'stored'
      const file = uploading
      uploading = null
      const res = await fetch('/api/shared', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ key: ev.key, filename: file.name, size: ev.bytes, name: session.name }),
      })
      const answer = await res.json()
      $('progress-text').textContent = res.ok ? 'stored and shared' : `stored, not shared: ${answer.error}`
    }
  }
})()
