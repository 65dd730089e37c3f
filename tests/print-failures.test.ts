// tests/print-failures.sh, which `npm test` runs when tap fails: it names each failing file and point from tap's saved results.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { testDir } from './helpers/temp-dir.js'

const SCRIPT = resolve(import.meta.dirname, 'print-failures.sh')

t.test('failing files and points with their diagnostics; passing files and todo points left out', async (t) => {
  const results = testDir('espra-tap-results-')
  mkdirSync(join(results, 'tests/roles'), { recursive: true })
  writeFileSync(join(results, 'tests/roles/broken.test.ts.tap'), [
    'TAP version 14', '# Subtest: a case', '    ok 1 - fine', '    not ok 2 - the seq is wrong', '      ---', '      found: 1', '      wanted: 2', '      ...',
    '    not ok 3 - later # TODO', '    1..3', 'not ok 1 - a case', '1..1', '',
  ].join('\n'))
  writeFileSync(join(results, 'tests/roles/fine.test.ts.tap'), 'TAP version 14\nok 1 - fine\n1..1\n')
  writeFileSync(join(results, 'tests/roles/todo.test.ts.tap'), 'TAP version 14\nnot ok 1 - not built yet # TODO\n1..1\n')
  const run = spawnSync('bash', [SCRIPT, results], { encoding: 'utf8' })
  t.equal(run.status, 0, run.stderr)
  t.match(run.stdout, /^## tests\/roles\/broken\.test\.ts\.tap$/m)
  t.match(run.stdout, /not ok 2 - the seq is wrong\n.*---\n.*found: 1\n.*wanted: 2/)
  t.match(run.stdout, /not ok 1 - a case/)
  t.notMatch(run.stdout, /fine\.test/, 'a passing file is not named')
  t.notMatch(run.stdout, /TODO/, 'a todo point is not a failure')
  t.notMatch(run.stdout, /todo\.test/, 'a file whose only failing points are todos is not named')
})

t.test('shellcheck passes on it', async (t) => {
  const run = spawnSync('shellcheck', [SCRIPT], { encoding: 'utf8' })
  t.equal(run.status, 0, `${run.stdout}${run.stderr}`)
})
