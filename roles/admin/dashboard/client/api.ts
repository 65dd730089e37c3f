/**
 * Calls to the admin API with the session cookie (same origin): reads as
 * they are; state-changing calls with the session's CSRF token in
 * `X-CSRF-Token`. A 401 means the session ended: back to the login page.
 */

export interface SessionInfo {
  operator: string
  role: 'viewer' | 'operator'
  csrf: string
  expiresAt: number
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

let session: SessionInfo | null = null

export async function loadSession(): Promise<SessionInfo> {
  const res = await fetch('/dashboard/session', { credentials: 'same-origin' })
  if (res.status === 401) {
    location.assign('/dashboard/login')
    throw new ApiError(401, 'ESPRA_ERR_ADMIN_UNAUTHORIZED', 'not logged in')
  }
  if (!res.ok) throw new ApiError(res.status, 'ESPRA_ERR_INTERNAL', `session: HTTP ${res.status}`)
  session = (await res.json()) as SessionInfo
  return session
}

export const currentSession = (): SessionInfo | null => session

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {}
  if (method !== 'GET') headers['X-CSRF-Token'] = session?.csrf ?? ''
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  const text = await res.text()
  let data: unknown = null
  try {
    data = text === '' ? null : JSON.parse(text)
  } catch {
    data = null
  }
  if (res.status === 401) location.assign('/dashboard/login')
  if (!res.ok) {
    const e = (data ?? {}) as { code?: string; message?: string }
    throw new ApiError(res.status, e.code ?? `HTTP_${res.status}`, e.message ?? `HTTP ${res.status}`)
  }
  return data as T
}

export async function logout(): Promise<void> {
  await fetch('/dashboard/logout', { method: 'POST', headers: { 'X-CSRF-Token': session?.csrf ?? '' }, credentials: 'same-origin' })
  location.assign('/dashboard/login')
}
