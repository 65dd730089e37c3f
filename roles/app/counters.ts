/**
 * An app child's series (see docs/metrics.md): the worker pool's figures
 * (./pool.ts `stats()`), worker crashes and task outcomes, read when
 * `/metrics` is scraped.
 */
import type { Registry } from 'prom-client'
import { counterFrom, gaugeFrom } from '../../lib/process/metric-sources.js'
import type { PoolStats } from './pool.js'
import type { TaskOutcome } from './protocol.js'

export class AppCounters {
  workerCrashes = 0
  readonly tasks: Record<Exclude<TaskOutcome['result'], 'released'>, number> = { done: 0, failed: 0 }

  /** A task settled (released ones are not: they go back to the queue untouched). */
  taskSettled(outcome: TaskOutcome): void {
    if (outcome.result !== 'released') this.tasks[outcome.result]++
  }

  register(registry: Registry, pool: () => PoolStats): void {
    gaugeFrom(registry, 'espra_app_workers', 'worker threads of the current build in this child', () => pool().workers)
    gaugeFrom(registry, 'espra_app_workers_busy', 'worker threads running a request or a task now', () => pool().busy)
    gaugeFrom(registry, 'espra_app_requests_queued', 'requests waiting for a worker (--queue-size bounds it)', () => pool().queued)
    counterFrom(registry, 'espra_app_requests_refused_busy_total', 'requests answered 503 because every worker was busy and the queue full', () => pool().refusedBusy)
    counterFrom(registry, 'espra_app_request_timeouts_total', 'requests answered 504 after --request-timeout (their worker is replaced)', () => pool().requestTimeouts)
    counterFrom(registry, 'espra_app_worker_crashes_total', 'worker threads that died (an uncaught error, or terminated for a timeout)', () => this.workerCrashes)
    gaugeFrom(registry, 'espra_app_tasks_running', 'tasks running on workers now', () => pool().tasksRunning)
    gaugeFrom(registry, 'espra_app_tasks_queued', 'tasks leased and waiting for a free worker', () => pool().tasksQueued)
    counterFrom(registry, 'espra_app_tasks_total', 'tasks this child ran to an end, by result (done, or failed: threw, timed out or its worker died)', () => [
      { labels: { result: 'done' }, value: this.tasks.done },
      { labels: { result: 'failed' }, value: this.tasks.failed },
    ])
    counterFrom(registry, 'espra_app_task_timeouts_total', 'tasks failed after --task-timeout (their worker is replaced)', () => pool().taskTimeouts)
  }
}
