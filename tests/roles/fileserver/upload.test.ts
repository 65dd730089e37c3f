// Pieces of roles/fileserver/upload-pipeline.ts without processes: the progress throttle on a fake clock, and the
// start-up check that fails loudly in a Node without OpenSSL's legacy provider.
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { createProgressThrottle } from '../../../roles/fileserver/upload-pipeline.js'

t.test('progress: at most one report per 250 ms, the first at once', async (t) => {
  let clock = 1000
  const sent: number[] = []
  const report = createProgressThrottle(250, (b) => sent.push(b), () => clock)
  for (let i = 1; i <= 100; i++) {
    report(i)
    clock += 10 // 100 chunks over one second
  }
  t.same(sent, [1, 26, 51, 76], 'four reports in one second of data')
})

t.test('whirlpool: a child without the legacy provider fails at start with a coded error', async (t) => {
  const module = pathToFileURL(resolve(import.meta.dirname, '../../../dist/roles/fileserver/upload-pipeline.js')).href
  const script = `import(${JSON.stringify(module)}).then((m) => { try { m.checkWhirlpool(); console.log('ok') } catch (e) { console.log(e.code) } })`
  const without = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, NODE_OPTIONS: '' } })
  t.equal(without.stdout.toString().trim(), 'ESPRA_ERR_UPLOAD_NO_WHIRLPOOL', without.stderr.toString())
  const withIt = spawnSync(process.execPath, ['--openssl-legacy-provider', '-e', script], { env: { ...process.env, NODE_OPTIONS: '' } })
  t.equal(withIt.stdout.toString().trim(), 'ok', withIt.stderr.toString())
})
