/**
 * Preloaded (`--require`, through NODE_OPTIONS) into the Live processes by
 * `bench/live-fanout.ts --cpu-prof <dir>`: Node refuses `--cpu-prof` in
 * NODE_OPTIONS, and a profile of the whole run would mostly show start-up and
 * subscribers connecting. So the V8 profiler runs only between two SIGUSR2s
 * (the bench sends the first when publishing starts, the second when every
 * message is delivered) and the second writes `<dir>/<role>-<pid>.cpuprofile`
 * (`child` for a node's child, which has no `--role`).
 */
'use strict'
const { Session } = require('node:inspector')
const { writeFileSync } = require('node:fs')
const { join } = require('node:path')

const dir = process.env.ESPRA_BENCH_CPU_PROF_WINDOW
if (dir) {
  const role = (process.argv.find((a) => a.startsWith('--role=')) ?? '').slice(7) || (process.env.ESPRA_CHILD === '1' ? 'child' : 'proc')
  let session = null
  process.on('SIGUSR2', () => {
    if (session === null) {
      session = new Session()
      session.connect()
      session.post('Profiler.enable')
      session.post('Profiler.setSamplingInterval', { interval: 500 })
      session.post('Profiler.start')
      return
    }
    const s = session
    session = null
    s.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(res.profile))
      s.disconnect()
    })
  })
}
