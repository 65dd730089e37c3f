#!/usr/bin/env node
/**
 * The espra-node binary: builds the command tree (bin/program.ts) and hands
 * off. A child forked by a node parent (ESPRA_CHILD set at fork time) takes
 * the child path instead.
 */
import { ROLE_NAMES, type RoleName } from '../lib/core/config.js'
import { CHILD_ROLE_ENV, exitOnError, rolesHelp } from '../lib/cli/run-node.js'
import { loadRole, loadRoles } from '../roles/registry.js'
import { buildProgram } from './program.js'

const childRole = process.env[CHILD_ROLE_ENV] as RoleName | undefined
if (process.env['ESPRA_CHILD']) {
  // A child loads only its node's role (named by the parent at fork time).
  const { runChild } = await import('../lib/process/child.js')
  await runChild(childRole && ROLE_NAMES.includes(childRole) ? { [childRole]: await loadRole(childRole) } : await loadRoles())
} else {
  // Every role's summary is loaded only when help may be printed.
  const args = process.argv.slice(2)
  const helpWanted = args.length === 0 || args.some((a) => a === '--help' || a === '-h' || a === 'help')
  const help = helpWanted ? rolesHelp(await loadRoles()) : ''
  buildProgram(help).parseAsync(process.argv).catch(exitOnError)
}
