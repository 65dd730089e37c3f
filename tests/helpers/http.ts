/** One HTTP(S) request from a test, answered as status, headers and the whole body as text. */
import { request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http'

export interface HttpAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

type RequestFn = (options: RequestOptions, callback: (res: IncomingMessage) => void) => ClientRequest

/** Sends `body` (parts written in turn) with node:http, or with `via` (e.g. node:https `request`). */
export function send(options: RequestOptions, body?: string | string[], via: RequestFn = httpRequest): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = via(options, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    for (const part of Array.isArray(body) ? body : body === undefined ? [] : [body]) req.write(part)
    req.end()
  })
}
