/**
 * `espra-node --role=<role>`: resolve the config once and run the node.
 * Also the CLI's one error exit: a bad value is one line on stderr and exit 2.
 */
import type { Command } from 'commander'
import { CommanderError } from 'commander'
import { loadConfig, ROLE_NAMES, type NodeConfig, type RoleName } from '../core/config.js'
import { EspraError } from '../core/errors.js'
import { assertPortFree } from '../http/ports.js'
import type { Role } from '../process/role.js'

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration. */
export const EXIT_USAGE = 2

/** Values the user set on the command line (not commander defaults), keyed by option key. */
export function cliFlags(cmd: Command): Record<string, unknown> {
  const flags: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(cmd.opts())) {
    if (cmd.getOptionValueSource(key) === 'cli') flags[key] = value
  }
  return flags
}

/** Loads the config from flags, env and file; usage errors exit 2 with one line. */
export function configFromCommand(cmd: Command): NodeConfig {
  const flags = cliFlags(cmd)
  return loadConfig({ flags, env: process.env, file: flags['config'] as string | undefined })
}

/**
 * Set in a node parent's environment before it forks: which role module a
 * child loads (bin/espra-node.ts). Its config still comes over IPC.
 */
export const CHILD_ROLE_ENV = 'ESPRA_CHILD_ROLE'

/** Loads the one role a node runs (roles/registry.ts `loadRole`). */
export type RoleLoader = (name: RoleName) => Promise<Role>

export async function runNodeCommand(loadRole: RoleLoader, cmd: Command): Promise<void> {
  if (Object.keys(cliFlags(cmd)).length === 0 && !process.env['ESPRA_ROLE'] && !process.env['ESPRA_CONFIG']) {
    cmd.outputHelp()
    return
  }
  const config = configFromCommand(cmd)
  // A node started by `espra-node up` stops when `up` goes away, so no node outlives it.
  // The channel is unref'd so it never keeps a stopped node alive.
  if (process.env['ESPRA_UP'] && process.channel) {
    process.channel.unref()
    process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'))
  }
  await assertPortFree(config.bind, config.port, '--port')
  await assertPortFree(config.metricsBind, config.metricsPort, '--metrics-port')
  if (config.role === 'seed') await assertPortFree(config.bind, config.metaPort, '--meta-port')
  const role = await loadRole(config.role)
  for (const { port, option } of role.listenPorts?.(config) ?? []) await assertPortFree(config.bind, port, option)
  process.env[CHILD_ROLE_ENV] = config.role
  // Loaded here, not at the top: `up`, `admin` and `config` never run a node.
  const { runNode } = await import('../process/parent.js')
  // 75 after a restart order (admin rolling-restart --mode restart): the process manager starts it again.
  process.exitCode = await runNode(role, config)
}

/** What every role is and what it does not do yet, for `--help`. */
export function rolesHelp(roles: Readonly<Record<RoleName, Role>>): string {
  const lines = ['', 'Roles:']
  for (const name of ROLE_NAMES) {
    const role = roles[name]
    lines.push(`  ${name.padEnd(11)} ${role.summary}`)
    if (role.notYet.length > 0) lines.push(`  ${''.padEnd(11)} not built yet: ${role.notYet.join('; ')}`)
  }
  lines.push(
    '',
    'Precedence: defaults < --config file < ESPRA_* environment < flags.',
    'Signals: SIGHUP replaces children one at a time; SIGTERM/SIGINT drain and stop (a second one forces).',
  )
  return lines.join('\n')
}

/** The one place the CLI turns an error into an exit code. */
export function exitOnError(err: unknown): never {
  if (err instanceof CommanderError) {
    // commander already printed the message (or the help/version it was asked for)
    process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE)
  }
  const code = (err as EspraError | undefined)?.code
  const usage = code === 'ESPRA_ERR_CONFIG_INVALID' || code === 'ESPRA_ERR_SECRET_MISSING' || code === 'ESPRA_ERR_SECRET_INSECURE'
  process.stderr.write(`espra-node: ${code && !usage ? `${code}: ` : ''}${(err as Error)?.message ?? String(err)}\n`)
  process.exit(usage ? EXIT_USAGE : 1)
}
