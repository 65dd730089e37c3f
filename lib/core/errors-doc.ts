/** docs/errors.md, generated from the error table (`npm run docs:errors`; tests/docs/errors.test.ts compares). */
import { placeholderNames } from './error-template.js'
import { ERRORS, type ErrorCode } from './errors.js'

/** The area of a code: its first word after `ESPRA_ERR_` (`META` of `ESPRA_ERR_META_AUTH`). */
const area = (code: string) => code.slice('ESPRA_ERR_'.length).split('_')[0]!

const cell = (text: string) => text.replaceAll('|', '\\|')

/**
 * Codes renamed to follow `ESPRA_ERR_<AREA>_<WHAT>`: the old name without its
 * prefix (no source may write a code the table lacks) → the new code.
 * Alerts and scripts that match an old name need the new one.
 */
const RENAMED: readonly (readonly [string, ErrorCode])[] = [
  ['LISTEN', 'ESPRA_ERR_NODE_LISTEN'],
  ['NOT_REGISTERED', 'ESPRA_ERR_META_NOT_REGISTERED'],
]

export function errorsMarkdown(): string {
  const byArea = new Map<string, ErrorCode[]>()
  for (const code of Object.keys(ERRORS) as ErrorCode[]) {
    const list = byArea.get(area(code)) ?? []
    list.push(code)
    byArea.set(area(code), list)
  }
  const lines = [
    '# Error codes',
    '',
    '<!-- Generated from lib/core/errors.ts by `npm run docs:errors`; do not edit by hand. -->',
    '',
    'Every error espra-node reports carries a code from this table: in HTTP JSON bodies (`{"code", "message"}`, with the status below), meta port and IPC replies, the one stderr line of the CLI (`espra-node: <code>: <message>`) and log lines (`err.code`). The message is the template below with each `{placeholder}` filled in; the filled values also travel as `details` (`{"option": "--port", "port": 8080, …}`), so a script can read the field, the node or the limit without parsing text. A template without placeholders is the whole message. Branch on the code, never on the message.',
    '',
  ]
  for (const [name, codes] of [...byArea].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`## ${name}`, '', '| code | HTTP status | message template | placeholders (details) |', '|---|---|---|---|')
    for (const code of codes.sort()) {
      const names = placeholderNames(ERRORS[code].message).map((name) => `\`${name}\``).join(', ')
      lines.push(`| \`${code}\` | ${ERRORS[code].status} | ${cell(ERRORS[code].message)} | ${names || '—'} |`)
    }
    lines.push('')
  }
  lines.push('## Renamed', '', 'Codes follow `ESPRA_ERR_<AREA>_<WHAT>`; these were renamed on 2026-12-03:', '', '| old code | new code |', '|---|---|')
  for (const [old, now] of RENAMED) lines.push(`| \`ESPRA_ERR_${old}\` | \`${now}\` |`)
  lines.push('')
  return lines.join('\n')
}
