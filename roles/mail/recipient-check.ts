/**
 * Asks the app at RCPT time whether it takes a recipient (the build's
 * optional `acceptRecipient(address)`): a signed POST to an app node found in
 * the seed's registry (lib/mail/inbound-recipient.ts), at most `timeoutMs`
 * for the whole question. While the app nodes' build does not export the
 * function, nothing is asked (learned from the first answer, per build).
 *
 * The answer is `accept`, `refuse` (with the app's reason) or `unavailable`
 * (no app node, a timeout, an error): the caller fails open or closed.
 */
import { request } from 'node:http'
import type { Logger } from '../../lib/core/log.js'
import { ACCEPT_RECIPIENT_PATH, signedQuestion, SIGNATURE_HEADER, type RecipientAnswer } from '../../lib/mail/inbound-recipient.js'
import type { MetaRequester } from '../../lib/tasks/queue-meta.js'

export type RecipientVerdict = { readonly verdict: 'accept' } | { readonly verdict: 'refuse'; readonly reason: string | null } | { readonly verdict: 'unavailable'; readonly why: string }

export interface RecipientCheck {
  check(address: string): Promise<RecipientVerdict>
}

interface AppNode {
  readonly id: string
  readonly address: string
  readonly port: number
  readonly build: string | null
}

/** How long the list of app nodes is kept before the seed is asked again. */
const NODES_TTL_MS = 2000

function post(node: AppNode, body: string, signature: string, signal: AbortSignal): Promise<RecipientAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: node.address, port: node.port, method: 'POST', path: ACCEPT_RECIPIENT_PATH, signal, agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [SIGNATURE_HEADER]: signature },
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8').slice(0, 2000)
        if (res.statusCode !== 200) return reject(new Error(`app node ${node.id} answered ${res.statusCode}: ${text.slice(0, 200)}`))
        try {
          const a = JSON.parse(text) as RecipientAnswer
          if (typeof a.accept !== 'boolean') throw new Error('no accept field')
          resolve(a)
        } catch (err) {
          reject(new Error(`app node ${node.id} answered something else than a verdict: ${(err as Error).message}`))
        }
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

export function createRecipientCheck(opts: { seed: MetaRequester; secret: string; timeoutMs: number; log: Logger }): RecipientCheck {
  let nodes: AppNode[] = []
  let fetchedAt = -Infinity
  let fetching: Promise<AppNode[]> | null = null
  /** Builds known not to export acceptRecipient. */
  const without = new Set<string>()

  const appNodes = (): Promise<AppNode[]> => {
    if (performance.now() - fetchedAt < NODES_TTL_MS) return Promise.resolve(nodes)
    fetching ??= opts.seed.request<AppNode[] & { health?: string; connected?: boolean }[]>('nodes', { role: 'app' }).then((list) => {
      nodes = (list as unknown as (AppNode & { health: string; connected: boolean })[]).filter((n) => n.connected && (n.health === 'ok' || n.health === 'degraded') && n.build !== null)
      fetchedAt = performance.now()
      return nodes
    }).finally(() => (fetching = null))
    return fetching
  }

  return {
    async check(address) {
      // The common case answered at once, with no timer: the listed app nodes are fresh and none of their builds asks.
      if (performance.now() - fetchedAt < NODES_TTL_MS && nodes.length > 0 && nodes.every((n) => without.has(n.build!))) return { verdict: 'accept' }
      const signal = AbortSignal.timeout(opts.timeoutMs)
      try {
        const list = await Promise.race([appNodes(), new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error('the seed did not list the app nodes in time'))))])
        if (list.length === 0) return { verdict: 'unavailable', why: 'no app node serves a build' }
        if (list.every((n) => without.has(n.build!))) return { verdict: 'accept' }
        const node = list[Math.floor(Math.random() * list.length)]!
        const { body, signature } = signedQuestion(opts.secret, address)
        const answer = await post(node, body, signature, signal)
        if (!answer.exported) without.add(node.build!)
        return answer.accept ? { verdict: 'accept' } : { verdict: 'refuse', reason: answer.reason }
      } catch (err) {
        const why = signal.aborted ? `no answer within ${opts.timeoutMs} ms` : (err as Error).message
        return { verdict: 'unavailable', why }
      }
    },
  }
}
