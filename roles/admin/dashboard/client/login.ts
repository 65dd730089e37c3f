/** The login page: posts the token as JSON; the answer sets the session cookie, then on to the dashboard. */
const form = document.getElementById('login') as HTMLFormElement
const input = document.getElementById('token') as HTMLInputElement
const error = document.getElementById('error') as HTMLElement

form.addEventListener('submit', (e) => {
  e.preventDefault()
  error.textContent = ''
  void fetch('/dashboard/login', {
    method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token: input.value.trim() }),
  }).then(async (res) => {
    if (res.ok) return location.assign('/dashboard/')
    const body = (await res.json().catch(() => ({}))) as { code?: string; message?: string }
    error.textContent = `${body.message ?? `HTTP ${res.status}`} (${body.code ?? res.status})`
    input.select()
  }, (err: unknown) => {
    error.textContent = `no answer from the admin node: ${String(err)}`
  })
})
