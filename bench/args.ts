/** What every bench script shares: numeric `--name value` arguments and a sleep. */

/** The number after `--<name>` on the command line, or `fallback`; anything but a positive number is an error. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`)
  return v
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
