import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseDuration, parseHostPort, parseSize } from '../../../lib/core/config-parsers.js'
import { defaultNodeId, loadConfig, NODE_OPTIONS, printable } from '../../../lib/core/config.js'
import { testDir } from '../../helpers/temp-dir.js'

const SECRET = 'x'.repeat(32)
const dir = testDir('espra-config-')
const env = (extra: Record<string, string> = {}) => ({ ESPRA_SECRET: SECRET, ...extra })

function configFile(data: unknown): string {
  const file = join(dir, `c${Math.random().toString(16).slice(2)}.json`)
  writeFileSync(file, typeof data === 'string' ? data : JSON.stringify(data))
  return file
}

t.test('defaults fill everything and depend on earlier options', async (t) => {
  const c = loadConfig({ flags: { role: 'live' }, env: env() })
  t.equal(c.port, 8083, 'live has its own default port')
  t.equal(c.metricsPort, 9083)
  t.equal(c.region, 'us-1')
  t.equal(c.heartbeatTimeout, 3000)
  t.equal(c.seedGrace, 6000, 'grace defaults to twice the heartbeat timeout')
  t.same(c.seed, ['127.0.0.1:7000'])
  t.equal(c.nodeId, defaultNodeId('live', 8083))
  t.ok(Object.isFrozen(c), 'frozen')
  t.throws(() => {
    ;(c as { port: number }).port = 1
  }, TypeError)
})

t.test('a default written only as text is that text parsed, so the documented default is the one used', async (t) => {
  const c = loadConfig({ flags: { role: 'proxy' }, env: env() })
  t.equal(c.drainTimeout, 10_000, "'10s'")
  t.equal(c.maxHeaderSize, 16 * 1024, "'16KB'")
  t.same(c.routeKeys, ['cookie:espra_session', 'ip'], "'cookie:espra_session,ip'")
  t.equal(c.logLevel, 'info')
  // Every option either documents its own default (the text parses to what is used) or computes it and says how.
  const written = NODE_OPTIONS.filter((o) => !o.defaultComputed)
  t.ok(written.length > 80, `${written.length} defaults written as text`)
  for (const o of written) t.same(c[o.key], o.parse(o.defaultText), `${o.flag}: default '${o.defaultText}'`)
})

t.test('precedence: defaults < file < env < flags', async (t) => {
  const file = configFile({ role: 'proxy', region: 'eu-1', children: 3, port: 9000, drainTimeout: '2s' })
  const fromFile = loadConfig({ flags: {}, env: env(), file })
  t.match(fromFile, { role: 'proxy', region: 'eu-1', children: 3, port: 9000, drainTimeout: 2000 })

  const fromEnv = loadConfig({ flags: {}, env: env({ ESPRA_REGION: 'ap-1', ESPRA_CHILDREN: '4' }), file })
  t.match(fromEnv, { region: 'ap-1', children: 4, port: 9000 }, 'env beats the file')

  const fromFlags = loadConfig({ flags: { region: 'sa-1', port: '9100' }, env: env({ ESPRA_REGION: 'ap-1' }), file })
  t.match(fromFlags, { region: 'sa-1', port: 9100, children: 3 }, 'flags beat env and file')

  const viaEnvFile = loadConfig({ flags: {}, env: env({ ESPRA_CONFIG: file }) })
  t.equal(viaEnvFile.region, 'eu-1', 'ESPRA_CONFIG names the file too')
})

t.test('invalid values name the option and what is allowed', async (t) => {
  const cases: [Record<string, unknown>, Record<string, string>, RegExp][] = [
    [{ role: 'nope' }, {}, /^--role: must be one of seed, proxy, live, fileserver, app, mail, admin \(got "nope"\)$/],
    [{ role: 'live', children: '0' }, {}, /^--children: must be an integer from 1 to 256/],
    [{ role: 'live', port: '70000' }, {}, /^--port: must be an integer from 1 to 65535/],
    [{ role: 'live', drainTimeout: 'soon' }, {}, /^--drain-timeout: must be a duration/],
    [{ role: 'live', seed: 'nohost' }, {}, /^--seed: must be host:port/],
    [{ role: 'live', region: 'US 1' }, {}, /^--region: must be lower-case/],
    [{ role: 'live' }, { ESPRA_MAX_CHILD_RSS: 'lots' }, /^ESPRA_MAX_CHILD_RSS: must be a size/],
    [{ role: 'live' }, { ESPRA_LOG_LEVEL: 'loud' }, /^ESPRA_LOG_LEVEL: must be one of fatal/],
    [{ role: 'app', appSettings: '[1]' }, {}, /^--app-settings: must be a JSON object \(got "\[1\]"\)$/],
    [{ role: 'app', appSettings: '{"a":' }, {}, /^--app-settings: must be a JSON object \(/],
    [{ role: 'app' }, { ESPRA_APP_SETTINGS: JSON.stringify({ big: 'x'.repeat(70_000) }) }, /^ESPRA_APP_SETTINGS: must be at most 65536 bytes/],
    [{}, {}, /^--role: is required/],
  ]
  for (const [flags, extra, message] of cases) {
    t.throws(() => loadConfig({ flags, env: env(extra) }), { code: 'ESPRA_ERR_CONFIG_INVALID', message }, String(message))
  }
})

t.test('config file problems are clear', async (t) => {
  t.throws(() => loadConfig({ flags: { role: 'live' }, env: env(), file: join(dir, 'missing.json') }), {
    message: /^--config: cannot read .*missing\.json \(ENOENT\)$/,
  })
  t.throws(() => loadConfig({ flags: { role: 'live' }, env: env(), file: configFile('{not json') }), { message: /is not valid JSON/ })
  t.throws(() => loadConfig({ flags: { role: 'live' }, env: env(), file: configFile([1]) }), { message: /must hold a JSON object/ })
  t.throws(() => loadConfig({ flags: { role: 'live' }, env: env(), file: configFile({ prot: 1 }) }), { message: /unknown key 'prot'/ })
  t.throws(() => loadConfig({ flags: {}, env: env(), file: configFile({ role: 'live', children: 'many' }) }), {
    message: /^config file key 'children': must be an integer/,
  })
})

t.test('the secret comes from ESPRA_SECRET or the secret file and is never printed', async (t) => {
  const secretFile = join(dir, 'secret')
  writeFileSync(secretFile, `${'s'.repeat(40)}\n`, { mode: 0o600 })
  const c = loadConfig({ flags: { role: 'seed', secretFile }, env: {} })
  t.equal(c.secret, 's'.repeat(40), 'trailing newline trimmed')
  t.notOk('secret' in printable(c))
  t.equal(loadConfig({ flags: { role: 'seed', secretFile }, env: env() }).secret, SECRET, 'ESPRA_SECRET wins')
  t.throws(() => loadConfig({ flags: { role: 'seed', secretFile: join(dir, 'none') }, env: {} }), { code: 'ESPRA_ERR_SECRET_MISSING' })
  t.throws(() => loadConfig({ flags: { role: 'seed' }, env: { ESPRA_SECRET: 'short' } }), {
    message: /^ESPRA_SECRET: the cluster secret must be at least 16 characters$/,
  })
})

t.test('a secret file other users may read is refused unless --insecure-secret-file', async (t) => {
  const secretFile = join(dir, 'open-secret')
  writeFileSync(secretFile, `${'o'.repeat(40)}\n`)
  for (const mode of [0o644, 0o640, 0o604, 0o660]) {
    chmodSync(secretFile, mode)
    t.throws(() => loadConfig({ flags: { role: 'seed', secretFile }, env: {} }), {
      code: 'ESPRA_ERR_SECRET_INSECURE',
      message: new RegExp(`^--secret-file: .*open-secret is open to other users \\(mode 0${mode.toString(8)}\\); run: chmod 600 .*open-secret \\(or pass --insecure-secret-file\\)$`),
    }, `mode ${mode.toString(8)} refused`)
  }
  chmodSync(secretFile, 0o644)
  t.equal(loadConfig({ flags: { role: 'seed', secretFile, insecureSecretFile: true }, env: {} }).secret, 'o'.repeat(40), 'accepted with the flag')
  t.equal(loadConfig({ flags: { role: 'seed', secretFile }, env: { ESPRA_INSECURE_SECRET_FILE: '1' } }).secret, 'o'.repeat(40), 'and with the env')
  t.equal(loadConfig({ flags: { role: 'seed', secretFile }, env: env() }).secret, SECRET, 'ESPRA_SECRET set: the file is not read')
  chmodSync(secretFile, 0o400)
  t.equal(loadConfig({ flags: { role: 'seed', secretFile }, env: {} }).secret, 'o'.repeat(40), 'owner-only modes are fine')
})

t.test('a heartbeat timeout under twice the interval is refused', async (t) => {
  t.throws(() => loadConfig({ flags: { role: 'seed', heartbeatTimeout: '100ms', heartbeatInterval: '1s' }, env: env() }), {
    code: 'ESPRA_ERR_CONFIG_INVALID',
    message: /^--heartbeat-timeout: must be at least twice --heartbeat-interval \(1000ms\), so one late heartbeat does not evict a live node \(got 100ms\)$/,
  })
  t.throws(() => loadConfig({ flags: { role: 'live' }, env: env({ ESPRA_HEARTBEAT_INTERVAL: '2s' }) }), { message: /^--heartbeat-timeout: must be at least twice/ }, 'default timeout vs a longer interval')
  t.equal(loadConfig({ flags: { role: 'seed', heartbeatTimeout: '2s', heartbeatInterval: '1s' }, env: env() }).heartbeatTimeout, 2000, 'exactly twice is fine')
})

t.test('a data directory under a regular file is one error naming --data-dir', async (t) => {
  const file = join(dir, 'plain-file')
  writeFileSync(file, 'x')
  t.throws(() => loadConfig({ flags: { role: 'live', dataDir: join(file, 'state') }, env: env() }), {
    code: 'ESPRA_ERR_CONFIG_INVALID',
    message: `--data-dir: cannot use ${join(file, 'state')}: ${file} is a file, not a directory`,
  })
  t.throws(() => loadConfig({ flags: { role: 'live', dataDir: file }, env: env() }), { message: /^--data-dir: cannot use .* is a file, not a directory$/ })
})

t.test('parsers', async (t) => {
  t.equal(parseDuration('250ms'), 250)
  t.equal(parseDuration('1.5s'), 1500)
  t.equal(parseDuration('2m'), 120_000)
  t.equal(parseDuration(42), 42)
  t.throws(() => parseDuration('-1s'))
  t.equal(parseSize('64KB'), 65536)
  t.equal(parseSize('1gb'), 1024 ** 3)
  t.throws(() => parseSize('1TB'))
  t.same(parseHostPort('[::1]:7000'), { host: '::1', port: 7000 })
  t.throws(() => parseHostPort('host:0'))
  const c = loadConfig({ flags: { role: 'live', seed: 'a.example:7000,[::1]:7001' }, env: env() })
  t.same(c.seed, ['a.example:7000', '[::1]:7001'])
})

t.test('every option has a flag, an env name and docs', async (t) => {
  for (const o of NODE_OPTIONS) {
    t.match(o.flag, /^--[a-z][a-z0-9-]+ (<[a-z]+>|\[bool\])$/, o.key)
    t.match(o.env, /^ESPRA_[A-Z0-9_]+$/, o.key)
    t.ok(o.doc.length > 10, `${o.key} is documented`)
  }
})

t.test('storage options: defaults, s3 needs a bucket, values are checked', async (t) => {
  const c = loadConfig({ flags: { role: 'fileserver', dataDir: dir }, env: env() })
  t.match(c, { blobStore: 'local', blobDir: join(dir, 'blobs'), s3Bucket: null, s3Region: 'us-east-1', s3Endpoint: null })
  const s3 = loadConfig({ flags: { role: 'fileserver', blobStore: 's3', s3Bucket: 'espra-files', s3Endpoint: 'http://127.0.0.1:4568/' }, env: env({ ESPRA_S3_REGION: 'eu-west-1' }) })
  t.match(s3, { blobStore: 's3', s3Bucket: 'espra-files', s3Region: 'eu-west-1', s3Endpoint: 'http://127.0.0.1:4568' })
  const cases: [Record<string, unknown>, Record<string, string>, RegExp][] = [
    [{ blobStore: 's3' }, {}, /^--s3-bucket: is required when --blob-store is s3$/],
    [{ blobStore: 'ftp' }, {}, /^--blob-store: must be one of local, s3/],
    [{}, { ESPRA_S3_BUCKET: 'Bad_Bucket' }, /^ESPRA_S3_BUCKET: must be an S3 bucket name/],
    [{}, { ESPRA_S3_BUCKET: '192.168.1.1' }, /^ESPRA_S3_BUCKET: must be an S3 bucket name/],
    [{ s3Endpoint: 'ftp://x' }, {}, /^--s3-endpoint: must be an http\(s\):\/\/host\[:port\] URL/],
    [{ s3Endpoint: 'http://user@host/path' }, {}, /^--s3-endpoint: must be/],
  ]
  for (const [flags, extra, message] of cases) {
    t.throws(() => loadConfig({ flags: { role: 'fileserver', ...flags }, env: env(extra) }), { code: 'ESPRA_ERR_CONFIG_INVALID', message }, String(message))
  }
})
