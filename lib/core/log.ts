/**
 * Structured JSON logs (pino), one line per event. Bindings (role, node,
 * child) are serialised once when the logger is made, not per line.
 */
import { pino, type Logger } from 'pino'
import type { LogLevel } from './config.js'

export type { Logger }

export interface LogBindings {
  role: string
  node: string
  /** Child index, absent in the parent. */
  child?: number
  [key: string]: unknown
}

/** Logs go to stdout (fd 1) synchronously so nothing is lost on exit. */
export function createLogger(level: LogLevel, bindings: LogBindings): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 1, sync: true }),
  )
}
