/** docs/configuration.md, generated from the option table (`npm run docs:config`; tests/lib/core/options-doc.test.ts compares). */
import { OPTION_AREAS } from './config.js'
import type { OptionSpec } from './config-parsers.js'

/**
 * Text for a table cell. Outside code spans: a flag (`--tls-cert`) becomes
 * code, as the hand-written reference had it, and `<` is escaped so
 * `<data-dir>` is not read as an HTML tag. `|` is escaped everywhere: GFM
 * splits cells on it even inside code spans.
 */
export function cell(text: string): string {
  return text
    .split(/(`[^`]*`)/)
    .map((part) => (part.startsWith('`') ? part : part.replaceAll('<', '\\<').replace(/(?<![\w`-])--[a-z][a-z0-9-]*/g, (flag) => `\`${flag}\``)))
    .join('')
    .replaceAll('|', '\\|')
}

function row(o: OptionSpec): string {
  return `| \`${o.flag.replaceAll('|', '\\|')}\` | \`${o.env}\` | ${cell(o.defaultText)} | ${cell(o.details ?? o.doc)} |`
}

export function configurationMarkdown(): string {
  const lines = [
    '# Configuration',
    '',
    '<!-- Generated from the option table (lib/core/options-*.ts, lib/core/config.ts) by `npm run docs:config`; do not edit by hand. -->',
    '',
    'Every node option: its flag, its environment variable, its default and what it does, by area. `espra-node --help` prints the same options in one line each; `espra-node config defaults` lists them and `espra-node config check` prints the config a node would run with. The commands (`up`, `datastore copy`, `admin`) are in [cli.md](cli.md).',
    '',
    'Every option is also an `ESPRA_*` environment variable and a key of the JSON file given with `--config <file>` (`ESPRA_CONFIG`); precedence is defaults < file < environment < flags. Durations take `ms`, `s`, `m`, `h` (plain numbers are milliseconds); sizes take `KB`, `MB`, `GB` (plain numbers are bytes). The config is validated once, frozen, and handed to children over IPC.',
    '',
    'The cluster secret comes from `ESPRA_SECRET` or the secret file (at least 16 characters; `openssl rand -hex 32 > secret && chmod 600 secret` makes one). It never crosses the wire.',
    '',
  ]
  for (const area of OPTION_AREAS) {
    lines.push(`## ${area.heading}`, '', '| flag | environment | default | what |', '|---|---|---|---|')
    for (const o of area.options) lines.push(row(o))
    lines.push('')
  }
  return lines.join('\n')
}
