/**
 * Preloaded (`--require`) into every espra process by `bench/mail-inbound.ts
 * --cpu-prof <dir>`: Node refuses `--cpu-prof` in NODE_OPTIONS, so this
 * starts the V8 profiler through the inspector and writes
 * `<dir>/<role>-<pid>.cpuprofile` when the process exits (a SIGTERM stop).
 */
'use strict'
const { Session } = require('node:inspector')
const { writeFileSync } = require('node:fs')
const { join } = require('node:path')

const dir = process.env.ESPRA_BENCH_CPU_PROF
if (dir) {
  const session = new Session()
  session.connect()
  session.post('Profiler.enable')
  session.post('Profiler.setSamplingInterval', { interval: 1000 })
  session.post('Profiler.start')
  const role = (process.argv.find((a) => a.startsWith('--role=')) ?? '').slice(7) || (process.send ? 'child' : 'proc')
  process.on('exit', () => {
    // The in-process inspector session answers synchronously, so this still runs before the process is gone.
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(res.profile))
    })
  })
}
