/** What every bench script shares: `--help`, `--name value` arguments and a sleep. */

import { readFileSync } from 'node:fs'

/**
 * With `--help` (or `-h`) on the command line, prints the script's header
 * comment (what it measures, what it needs, its arguments) and exits.
 */
export function helpFrom(scriptUrl: string): void {
  if (!process.argv.includes('--help') && !process.argv.includes('-h')) return
  const header = /^\/\*\*([\s\S]*?)\*\//.exec(readFileSync(new URL(scriptUrl), 'utf8'))?.[1] ?? ''
  console.log(header.split('\n').map((l) => l.replace(/^ \* ?| \*$/, '')).join('\n').trim())
  process.exit(0)
}

/** The number after `--<name>` on the command line, or `fallback`; anything but a positive number is an error. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`)
  return v
}

/** The text after `--<name>` on the command line, or undefined when it is not given; a flag without a value is an error. */
export function textArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return undefined
  const v = process.argv[i + 1]
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`)
  return v
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
