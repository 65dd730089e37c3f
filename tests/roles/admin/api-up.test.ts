// `espra-node up` gives its admin node an operator token: <data-dir>/admin-tokens (the tokens file, holding only
// the token's sha256) and <data-dir>/admin-token (the token), both 0600; it prints the API's address and where the
// token is, and the API answers with that token (and refuses without it).
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createHash } from 'node:crypto'
import { apiCall } from '../../helpers/admin-api.js'
import { startUp, waitFor } from '../../helpers/up.js'

t.test('up writes the token files 0600, prints the address, and the API answers with the token', async (t) => {
  const up = await startUp(t, ['--no-sample-app'])
  const dataDir = join(up.dir, '.espra')
  const tokenFile = join(dataDir, 'admin-token')
  const tokensFile = join(dataDir, 'admin-tokens')
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'admin-token is 0600')
  t.equal(statSync(tokensFile).mode & 0o777, 0o600, 'admin-tokens is 0600')
  const token = readFileSync(tokenFile, 'utf8').trim()
  t.match(token, /^espra_admin_[A-Za-z0-9_-]{43}$/)
  const tokens = readFileSync(tokensFile, 'utf8')
  t.notOk(tokens.includes(token), 'the tokens file never holds the token itself')
  t.match(tokens, new RegExp(`^up operator ${createHash('sha256').update(token).digest('hex')}$`, 'm'))
  const port = up.port('admin')
  // startUp waits for the last line up prints: the address lines are all there.
  const printed = up.output()
  t.match(printed, `admin API   http://127.0.0.1:${port}/api/  (token in ${tokenFile}`)
  t.match(printed, `dashboard   http://127.0.0.1:${port}/dashboard/  (log in with the token in ${tokenFile})`)
  // The admin child's own seed link may still be connecting when `up` says the cluster is up (503 until then).
  const status = await waitFor('the admin API answers', async () => {
    const a = await apiCall(port, 'GET', '/api/status', { token })
    return a.status === 503 ? undefined : a
  })
  t.equal(status.status, 200)
  t.same(status.json.nodes.map((n: { role: string }) => n.role).sort(), ['admin', 'app', 'fileserver', 'live', 'mail', 'proxy', 'seed'])
  const acted = await apiCall(port, 'POST', '/api/tokens/live', { token, body: { sub: ['chat:*'] } })
  t.equal(acted.status, 201, 'the up operator may act')
  t.equal((await apiCall(port, 'GET', '/api/status', { token: null })).status, 401)
})
