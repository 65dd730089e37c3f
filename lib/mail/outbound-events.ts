/**
 * Outbound mail events given to the app: each event written to a message's
 * record is also enqueued on the app's task queue as a task named
 * `espra.mail.event`, which app workers run with the build's optional
 * `handleMailEvent(event)` export (a build without it finishes such tasks at
 * once). At least once, like every task; an event whose enqueue fails is
 * logged and kept on the record only.
 */
import type { Logger } from '../core/log.js'
import type { TaskQueue } from '../tasks/queue.js'
import { newTask } from '../tasks/task.js'
import type { OutEvent, OutRecord } from './outbound-store.js'

export const MAIL_EVENT_TASK_NAME = 'espra.mail.event'
const MAIL_EVENT_ATTEMPTS = 10

/** What `handleMailEvent(event)` receives. */
export interface MailEvent extends OutEvent {
  /** The outbound message id (`o…`). */
  readonly message: string
  readonly messageId: string
  /** The envelope sender ('' for our own notices). */
  readonly from: string
}

export type EventSink = (record: OutRecord, events: readonly OutEvent[]) => Promise<void>

export function createEventSink(queue: TaskQueue | null, log: Logger): EventSink {
  return async (record, events) => {
    if (queue === null) return
    for (const e of events) {
      const event: MailEvent = { ...e, message: record.id, messageId: record.messageId, from: record.from }
      try {
        await queue.enqueue(newTask(MAIL_EVENT_TASK_NAME, event, { attempts: MAIL_EVENT_ATTEMPTS }))
      } catch (err) {
        log.warn({ err, message: record.id, event: e.type }, `could not give the app the ${e.type} event of ${record.id} (it is on the record)`)
      }
    }
  }
}
