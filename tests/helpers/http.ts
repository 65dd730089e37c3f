/** HTTP(S) requests from tests: answered as status, headers and the whole body. */
import { request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http'
import { connect } from 'node:net'

export interface HttpAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

export interface BytesAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

type RequestFn = (options: RequestOptions, callback: (res: IncomingMessage) => void) => ClientRequest

/** Sends `body` (parts written in turn) with node:http, or with `via` (e.g. node:https `request`); the body comes back as bytes. */
export function sendForBytes(options: RequestOptions, body?: string | Buffer | (string | Buffer)[], via: RequestFn = httpRequest): Promise<BytesAnswer> {
  return new Promise((resolve, reject) => {
    const req = via(options, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    for (const part of Array.isArray(body) ? body : body === undefined ? [] : [body]) req.write(part)
    req.end()
  })
}

/** {@link sendForBytes} with the body as UTF-8 text. */
export async function send(options: RequestOptions, body?: string | Buffer | (string | Buffer)[], via: RequestFn = httpRequest): Promise<HttpAnswer> {
  const answer = await sendForBytes(options, body, via)
  return { ...answer, body: answer.body.toString('utf8') }
}

/** Sends a GET request line byte for byte (node:http would normalise some paths); resolves with the answer's status. */
export function rawGet(port: number, path: string, host = 'x'): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`))
    let text = ''
    socket.on('data', (d) => (text += d.toString('latin1')))
    socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)))
    socket.on('error', reject)
  })
}
