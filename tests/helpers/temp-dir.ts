/**
 * Temp directories of a test process, removed when it exits. The removal is
 * registered with the first directory, so exit handlers registered before
 * that (a bench stopping the PostgreSQL server it started in one) run first;
 * the nodes a test starts are stopped at its teardown, before any of them.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const made: string[] = []

function removeAll(): void {
  for (const dir of made) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 2 })
    } catch {
      // A process still writing there (killed by a later exit handler): the directory stays, the exit goes on.
    }
  }
}

/** A fresh directory `<os temp dir>/<prefix>XXXXXX`, gone when this process exits. */
export function testDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  if (made.length === 0) process.once('exit', removeAll)
  made.push(dir)
  return dir
}
