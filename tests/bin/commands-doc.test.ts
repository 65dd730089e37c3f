// Every command of the binary is documented: the command tree is the one bin/espra-node.ts runs
// (bin/program.ts), walked here (so a command added there is found without this test knowing it), and
// each full path (`admin mail suppression add`) must appear in the README or a page of docs/.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { buildProgram } from '../../bin/program.js'

const docs = [
  readFileSync(new URL('../../README.md', import.meta.url), 'utf8'),
  ...readdirSync(new URL('../../docs/', import.meta.url)).filter((f) => f.endsWith('.md')).map((f) => readFileSync(new URL(`../../docs/${f}`, import.meta.url), 'utf8')),
].join('\n')

function tree(command: Command, path: readonly string[] = []): string[][] {
  return command.commands.flatMap((sub) => [[...path, sub.name()], ...tree(sub, [...path, sub.name()])])
}

t.test('every command and subcommand of espra-node is named in the README or docs/', async (t) => {
  const commands = tree(buildProgram(''))
  t.ok(commands.length >= 40, `the tree was read (${commands.length} commands)`)
  t.ok(commands.some((c) => c.join(' ') === 'admin mail suppression add'), 'three levels deep')
  for (const command of commands) {
    t.ok(docs.includes(command.join(' ')), `\`${command.join(' ')}\` is documented`)
  }
})
