// docs/configuration.md is the option table (lib/core/options-*.ts) as published: generated, grouped by area, its links alive.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { NODE_OPTIONS, OPTION_AREAS } from '../../../lib/core/config.js'
import { cell, configurationMarkdown } from '../../../lib/core/options-doc.js'

const ROOT = resolve(import.meta.dirname, '../../..')

t.test('docs/configuration.md is generated from the table (npm run docs:config)', async (t) => {
  t.equal(readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8'), configurationMarkdown(), 'run `npm run docs:config` after changing an option')
})

t.test('the areas hold every option once, in the table order', async (t) => {
  t.same(OPTION_AREAS.flatMap((a) => a.options.map((o) => o.key)), NODE_OPTIONS.map((o) => o.key))
  t.equal(new Set(NODE_OPTIONS.map((o) => o.key)).size, NODE_OPTIONS.length, 'no key twice')
  const headings = OPTION_AREAS.map((a) => a.heading)
  t.equal(new Set(headings).size, headings.length, 'no heading twice')
  for (const area of OPTION_AREAS) t.ok(area.options.length > 0, `${area.heading} has options`)
})

t.test('details, where given, say more than the one-line doc', async (t) => {
  const detailed = NODE_OPTIONS.filter((o) => o.details !== undefined)
  t.ok(detailed.length > 20, `${detailed.length} options have details`)
  for (const o of detailed) t.not(o.details, o.doc, `${o.key}: details differ from doc`)
})

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes. */
const anchor = (heading: string) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replaceAll(' ', '-')

t.test('every link of the page reaches a file of docs/ and, with an anchor, one of its headings', async (t) => {
  const links = [...configurationMarkdown().matchAll(/\]\(([^)]+)\)/g)].map((m) => m[1]!)
  t.ok(links.length > 10, `${links.length} links`)
  for (const link of links) {
    const [file, hash] = link.split('#') as [string, string | undefined]
    const path = join(ROOT, 'docs', file)
    if (!t.ok(existsSync(path), `${link}: docs/${file} exists`) || hash === undefined) continue
    const headings = readFileSync(path, 'utf8').split('\n').filter((l) => /^#+ /.test(l)).map((l) => anchor(l.replace(/^#+ /, '')))
    t.ok(headings.includes(hash), `${link}: a heading of docs/${file}`)
  }
})

t.test('cells: flags become code, < outside code is escaped, | everywhere', async (t) => {
  t.equal(cell('needs --tls-key; see `--tls-cert`'), 'needs `--tls-key`; see `--tls-cert`')
  t.equal(cell('<data-dir>/secret'), '\\<data-dir>/secret')
  t.equal(cell('`<name> <viewer|operator>`'), '`<name> <viewer\\|operator>`')
  t.equal(cell('plain-HTTP and x--y stay'), 'plain-HTTP and x--y stay')
})

t.test('docs/cli.md leaves the options to docs/configuration.md', async (t) => {
  const cli = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8')
  t.match(cli, '[configuration.md](configuration.md)')
  t.notOk(cli.split('\n').some((l) => l.startsWith('| `--role ')), 'no option table in cli.md')
})
