// A strict reader of the Prometheus text format (0.0.4) for tests: it throws on anything a
// Prometheus server would reject or that breaks the format's rules (a bad name or label, a HELP or
// TYPE line twice or after the family's samples, a family split in two, the same series twice,
// histogram buckets that are not cumulative or whose +Inf differs from _count).
import { get } from './cluster.js'

export interface PromSample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface PromText {
  readonly samples: readonly PromSample[]
  /** Family name → TYPE. */
  readonly types: ReadonlyMap<string, string>
  /** Samples of `name` whose labels include every one of `labels`. */
  find(name: string, labels?: Record<string, string>): PromSample[]
  /** The one sample of `name` with exactly these labels; throws when there is none. */
  value(name: string, labels?: Record<string, string>): number
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  if (text === 'NaN') return NaN
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value: ${line}`)
  return Number(text)
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {}
  let i = 0
  while (i < text.length) {
    const eq = text.indexOf('=', i)
    if (eq < 0) throw new Error(`bad labels: ${line}`)
    const name = text.slice(i, eq)
    if (!LABEL.test(name)) throw new Error(`bad label name '${name}': ${line}`)
    if (Object.hasOwn(labels, name)) throw new Error(`label '${name}' twice: ${line}`)
    if (text[eq + 1] !== '"') throw new Error(`unquoted label value: ${line}`)
    let j = eq + 2
    let value = ''
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\') {
        const next = text[++j]
        if (next === 'n') value += '\n'
        else if (next === '\\' || next === '"') value += next
        else throw new Error(`bad escape in label value: ${line}`)
      } else value += text[j]
    }
    if (j >= text.length) throw new Error(`unterminated label value: ${line}`)
    labels[name] = value
    i = j + 1
    if (i < text.length) {
      if (text[i] !== ',') throw new Error(`expected ',' between labels: ${line}`)
      i++
    }
  }
  return labels
}

/** The family a sample belongs to: histogram parts name their histogram. */
function familyOf(name: string, types: ReadonlyMap<string, string>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    const base = name.slice(0, -suffix.length)
    if (name.endsWith(suffix) && (types.get(base) === 'histogram' || types.get(base) === 'summary')) return base
  }
  return name
}

const key = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)))

export function parsePromText(text: string): PromText {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition must end with a newline')
  const types = new Map<string, string>()
  const helps = new Set<string>()
  const done = new Set<string>()
  const seen = new Set<string>()
  const samples: PromSample[] = []
  let current: string | null = null
  const enter = (family: string, line: string): void => {
    if (family === current) return
    if (done.has(family)) throw new Error(`family ${family} is split: ${line}`)
    if (current !== null) done.add(current)
    current = family
  }
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (!m) continue // a comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string]
      if (!NAME.test(name)) throw new Error(`bad metric name: ${line}`)
      enter(name, line)
      if (samples.some((s) => familyOf(s.name, types) === name)) throw new Error(`${kind} after samples: ${line}`)
      if (kind === 'HELP') {
        if (helps.has(name)) throw new Error(`HELP twice: ${line}`)
        helps.add(name)
      } else {
        if (types.has(name)) throw new Error(`TYPE twice: ${line}`)
        if (!TYPES.has(rest)) throw new Error(`bad type: ${line}`)
        types.set(name, rest)
      }
      continue
    }
    const m = /^([^\s{]+)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line)
    if (!m) throw new Error(`bad sample line: ${line}`)
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string]
    if (!NAME.test(name)) throw new Error(`bad metric name: ${line}`)
    enter(familyOf(name, types), line)
    const labels = labelText === undefined ? {} : parseLabels(labelText, line)
    const id = `${name}${key(labels)}`
    if (seen.has(id)) throw new Error(`series twice: ${line}`)
    seen.add(id)
    samples.push({ name, labels, value: parseValue(valueText, line) })
  }
  // Histograms: cumulative buckets ending in +Inf, equal to _count.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue
    const groups = new Map<string, PromSample[]>()
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels
      if (le === undefined) throw new Error(`${family}_bucket without le`)
      const k = key(rest)
      groups.set(k, [...(groups.get(k) ?? []), s])
    }
    for (const [k, buckets] of groups) {
      let previous = -Infinity
      let last = 0
      for (const b of buckets) {
        const le = parseValue(b.labels['le']!, `${family} le`)
        if (le <= previous) throw new Error(`${family}: buckets out of order`)
        previous = le
        if (b.value < last) throw new Error(`${family}: buckets not cumulative`)
        last = b.value
      }
      if (previous !== Infinity) throw new Error(`${family}: no +Inf bucket`)
      const count = samples.find((s) => s.name === `${family}_count` && key(s.labels) === k)
      if (count === undefined || count.value !== last) throw new Error(`${family}: _count differs from the +Inf bucket`)
    }
  }
  const matches = (s: PromSample, labels: Record<string, string>): boolean => Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  return {
    samples,
    types,
    find: (name, labels = {}) => samples.filter((s) => s.name === name && matches(s, labels)),
    value(name, labels = {}) {
      const s = samples.find((x) => x.name === name && key(x.labels) === key(labels))
      if (s === undefined) throw new Error(`no sample ${name}${JSON.stringify(labels)}`)
      return s.value
    },
  }
}

/** GETs `/metrics` from a node's metrics port and parses it strictly. */
export async function scrape(metricsPort: number): Promise<PromText> {
  const res = await get(metricsPort, '/metrics')
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  return parsePromText(res.body)
}

/** The `_count` of a status-labelled request histogram of one child. */
export function answered(text: PromText, histogram: string, labels: Record<string, string>): number {
  return text.find(`${histogram}_count`, labels).reduce((n, s) => n + s.value, 0)
}
