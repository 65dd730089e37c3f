/**
 * Building the page: every piece of data goes in as text (`textContent`,
 * attribute values set one by one), never as markup. Node ids, build
 * messages, alert texts and audit params are hostile input.
 */

export type Child = Node | string | number | null | undefined | false
export type Attrs = Record<string, string | number | boolean | null | undefined | ((e: Event) => void)>

/** `h('td', {class: 'num'}, '12')`: an element; strings become text nodes, `on*` attributes become listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (typeof value === 'function') el.addEventListener(name.slice(2), value)
    else el.setAttribute(name, value === true ? '' : String(value))
  }
  append(el, children)
  return el
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    el.append(typeof c === 'object' ? c : document.createTextNode(String(c)))
  }
}

/** Replaces everything inside `el`. */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren()
  append(el, children)
}

/** A table; `numeric` lists the columns (0-based) whose header aligns right, over right-aligned figures. */
export function table(headers: string[], rows: Node[], empty = 'nothing', className = '', numeric: ReadonlySet<number> = new Set()): HTMLElement {
  return h('table', { class: className || null }, h('thead', {}, h('tr', {}, ...headers.map((x, i) => h('th', { scope: 'col', class: numeric.has(i) ? 'num' : null }, x)))),
    h('tbody', {}, ...(rows.length > 0 ? rows : [h('tr', {}, h('td', { colspan: headers.length, class: 'mute' }, empty))])))
}

export const badge = (text: string): HTMLElement => h('span', { class: `badge ${text.replace(/[^a-z-]/g, '')}` }, text)

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–'
  return n < 1024 ** 2 ? `${(n / 1024).toFixed(0)} KB` : n < 1024 ** 3 ? `${(n / 1024 ** 2).toFixed(1)} MB` : `${(n / 1024 ** 3).toFixed(2)} GB`
}

export function ago(ms: number): string {
  if (!Number.isFinite(ms)) return '–'
  const s = Math.max(0, Math.round(ms / 1000))
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
}

export const time = (at: number | null | undefined): string => (typeof at === 'number' ? new Date(at).toLocaleString() : '–')
export const num = (n: number | undefined, digits = 0): string => (typeof n === 'number' && Number.isFinite(n) ? n.toFixed(digits) : '–')

let toastTimer: number | undefined
/** A short message at the bottom right (the result of an action). */
export function toast(text: string, bad = false): void {
  const el = document.getElementById('toast')
  if (el === null) return
  el.textContent = text
  el.className = `toast show${bad ? ' bad' : ''}`
  window.clearTimeout(toastTimer)
  toastTimer = window.setTimeout(() => (el.className = 'toast'), 6000)
}

/** Asks before an action: a modal dialog with the question; resolves true on confirm. */
export function confirmAction(question: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h('dialog', { 'aria-label': 'confirm' })
    const cancel = h('button', { type: 'button', id: 'confirm-cancel' }, 'Cancel')
    const ok = h('button', { type: 'button', class: 'danger', id: 'confirm-ok' }, confirmLabel)
    const done = (answer: boolean): void => {
      dialog.close()
      dialog.remove()
      resolve(answer)
    }
    cancel.addEventListener('click', () => done(false))
    ok.addEventListener('click', () => done(true))
    dialog.addEventListener('cancel', () => done(false))
    append(dialog, [h('p', {}, question), h('div', { class: 'row' }, cancel, ok)])
    document.body.append(dialog)
    dialog.showModal()
    cancel.focus()
  })
}
