/**
 * Message templates of the error table: a sentence with named `{placeholders}`
 * that a call site fills with values. The placeholder names are read from the
 * template's literal type, so a call that leaves one out does not compile.
 */

/** The `{name}`s of a template literal type, as a union (`never` when it has none). */
export type Placeholders<Template extends string> =
  Template extends `${string}{${infer Name}}${infer Rest}` ? Name | Placeholders<Rest> : never

/** What fills a placeholder: printable and able to cross IPC and the meta port as it is. */
export type PlaceholderValue = string | number | boolean

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9]*)\}/g

/** The names in a template, in order of first appearance (for docs and checks). */
export function placeholderNames(template: string): string[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1]!))]
}

/**
 * Fills each `{name}` with `String(values[name])` in one pass, so braces inside a
 * value are printed as they are and never filled again. A name without a value
 * (only possible past the type checker, e.g. a legacy call or a cast) stays
 * `{name}` in the text, which shows what was missing instead of throwing while
 * an error is being raised.
 */
export function fillTemplate(template: string, values: Readonly<Record<string, unknown>> | undefined): string {
  return template.replace(PLACEHOLDER, (whole, name: string) => {
    const value = values?.[name]
    return value === undefined ? whole : String(value)
  })
}
