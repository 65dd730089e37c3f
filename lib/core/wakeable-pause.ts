/**
 * A pause a loop takes between rounds that another part can cut short: a
 * consumer waits for work or for a retry delay, and whoever frees a slot or
 * stops the consumer wakes it at once instead of letting the timer run out.
 */
export interface WakeablePause {
  /** Resolves after `ms`, or sooner when `wake` is called. One pause at a time. */
  pause(ms: number): Promise<void>
  /** Ends the pause under way now, if any. */
  wake(): void
}

export function createWakeablePause(): WakeablePause {
  let wake: (() => void) | null = null
  return {
    pause: (ms) => new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done(): void {
        clearTimeout(timer)
        if (wake === done) wake = null
        resolve()
      }
      wake = done
    }),
    wake() {
      const w = wake
      wake = null
      w?.()
    },
  }
}
