/** `espra-node config check` and `espra-node config defaults`, driven by the option table. */
import type { Command } from 'commander'
import { NODE_OPTIONS, printable } from '../core/config.js'
import { configFromCommand } from './run-node.js'

/** Validates exactly what a node would run with and prints it as JSON, without the secret. */
export function configCheck(cmd: Command): void {
  const config = configFromCommand(cmd)
  process.stdout.write(`${JSON.stringify(printable(config), null, 2)}\n`)
}

export function configDefaults(opts: { json?: boolean }): void {
  if (opts.json) {
    const rows = NODE_OPTIONS.map((o) => ({ key: o.key, flag: o.flag, env: o.env, default: o.defaultText, doc: o.doc }))
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    return
  }
  for (const o of NODE_OPTIONS) {
    process.stdout.write(`${o.flag.padEnd(34)} ${o.env.padEnd(26)} ${o.defaultText}\n${''.padEnd(35)}${o.doc}\n`)
  }
}
