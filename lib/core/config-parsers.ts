/**
 * The pieces the option tables are built from: the option shape and the value
 * parsers. Each parser returns the parsed value or throws an `InvalidValue`, a short sentence
 * saying what is allowed; the loader turns that into a one-line error naming
 * the option.
 */
import { statSync } from 'node:fs'
import { dirname } from 'node:path'
import { InvalidValue } from './errors.js'

/** A value from a source before parsing: a flag/env string or a config-file JSON value. */
export type Raw = unknown

export interface OptionSpec<K extends string = string, V = unknown> {
  readonly key: K
  /** Commander flag syntax, e.g. `--drain-timeout <duration>`. */
  readonly flag: string
  readonly env: string
  /** One line for `--help` and `config defaults`. */
  readonly doc: string
  /**
   * The reference's text (Markdown) where it says more than `doc`: links, ranges, exit codes.
   * docs/configuration.md shows it instead of `doc`, so it repeats what `doc` says.
   */
  readonly details?: string | undefined
  /** Shown in help and `config defaults`; computed defaults get a description instead. */
  readonly defaultText: string
  /** True when `default` computes the value and `defaultText` describes it; false when it is `defaultText` parsed. */
  readonly defaultComputed: boolean
  readonly default: (partial: Record<string, unknown>) => V
  /** Returns the parsed value or throws an `InvalidValue` saying what is allowed. */
  readonly parse: (raw: Raw) => V
}

/** The type an option gives the config: what its parser returns, or its default when that differs (`null`: not set). */
export type OptionValue<O> = O extends OptionSpec<string, infer V> ? V : never

export function integer(min: number, max: number) {
  return (raw: Raw): number => {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidValue(`must be an integer from ${min} to ${max}`)
    return n
  }
}

export const port = integer(1, 65535)

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Parses `250ms`, `10s`, `2m`, `1h` or a plain number of milliseconds. */
export function parseDuration(raw: Raw): number {
  if (typeof raw === 'number' && Number.isFinite(raw) && raw >= 0) return Math.round(raw)
  const m = typeof raw === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim()) : null
  if (!m) throw new InvalidValue('must be a duration such as 500ms, 10s, 2m or 1h')
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!)
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/** Parses `64KB`, `512MB`, `1GB` or a plain number of bytes. */
export function parseSize(raw: Raw): number {
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= 0) return raw
  const m = typeof raw === 'string' ? /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(raw.trim()) : null
  if (!m) throw new InvalidValue('must be a size such as 65536, 64KB, 512MB or 1GB')
  return Math.round(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]!)
}

export function durationIn(min: number, max: number) {
  return (raw: Raw): number => {
    const ms = parseDuration(raw)
    if (ms < min || ms > max) throw new InvalidValue(`must be a duration from ${min}ms to ${max}ms`)
    return ms
  }
}

export function oneOf<T extends string>(values: readonly T[]) {
  return (raw: Raw): T => {
    if (typeof raw !== 'string' || !values.includes(raw as T)) throw new InvalidValue(`must be one of ${values.join(', ')}`)
    return raw as T
  }
}

export function text(pattern: RegExp, allowed: string) {
  return (raw: Raw): string => {
    if (typeof raw !== 'string' || !pattern.test(raw)) throw new InvalidValue(`must be ${allowed}`)
    return raw
  }
}

export const HOST = /^[A-Za-z0-9.:\-[\]]{1,253}$/
export const host = text(HOST, 'a host name or IP address')

/** `host:port` with an IPv6 host in brackets. */
export function parseHostPort(raw: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw.trim())
  const p = m ? Number(m[2]) : 0
  if (!m || p < 1 || p > 65535) throw new InvalidValue(`must be host:port (got '${raw}')`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: p }
}

export function seedList(raw: Raw): string[] {
  const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null
  if (!list || list.length === 0 || list.some((s) => typeof s !== 'string')) {
    throw new InvalidValue('must be a comma-separated list of host:port')
  }
  return list.map((s: string) => {
    const { host: h, port: p } = parseHostPort(s)
    return h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`
  })
}

/** `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, or a JSON boolean in the config file). */
export function flag(raw: Raw): boolean {
  if (typeof raw === 'boolean') return raw
  const v = typeof raw === 'string' ? raw.trim().toLowerCase() : ''
  if (['true', '1', 'yes', 'on'].includes(v)) return true
  if (['false', '0', 'no', 'off'].includes(v)) return false
  throw new InvalidValue('must be true or false')
}

/**
 * One row of the option table; the config's type is derived from the rows
 * (`NodeConfig`). Without `default`, the default is `defaultText` parsed as
 * if the operator had written it, so the documented default is the real one;
 * a computed default (`default`) comes with a description instead.
 */
export function option<K extends string, V, D = V>(spec: {
  readonly key: K
  readonly flag: string
  readonly env: string
  readonly doc: string
  readonly details?: string
  readonly defaultText: string
  readonly default?: (partial: Record<string, unknown>) => D
  readonly parse: (raw: Raw) => V
}): OptionSpec<K, V | D> {
  const { parse, defaultText } = spec
  return { ...spec, defaultComputed: spec.default !== undefined, default: spec.default ?? (() => parse(defaultText)) }
}

/** One section of docs/configuration.md: its heading and its options, in table order. */
export interface OptionArea<O extends readonly OptionSpec[] = readonly OptionSpec[]> {
  readonly heading: string
  readonly options: O
}

export const constant = <const T>(v: T) => (): T => v

/**
 * The regular file at `dir` or above it that keeps it from being a
 * directory (mkdir -p would fail with ENOTDIR), or null.
 */
export function fileInTheWay(dir: string): string | null {
  for (let p = dir; ; p = dirname(p)) {
    try {
      return statSync(p).isDirectory() ? null : p
    } catch {
      if (dirname(p) === p) return null
    }
  }
}
