import { readFileSync } from 'node:fs'

/** The package version, read once from package.json (two levels above dist/lib/core or lib/core). */
export const VERSION: string = (() => {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'espra-node' && pkg.version) return pkg.version
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0-unknown'
})()
