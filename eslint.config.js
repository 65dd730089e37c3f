// Lint for the whole tree: `npx eslint .`, part of `npm test`.
// `espra/layers` is the project's import direction (STYLE.md, rule 2); the rest are stock ESLint and typescript-eslint rules.
import { dirname, relative, resolve } from 'node:path'
import tseslint from 'typescript-eslint'

/**
 * `lib/` folders in layers, lowest first: a folder imports its own files and
 * folders of lower layers, never one beside or above it. A new folder must be
 * placed here before anything in it passes lint.
 */
const LIB_LAYERS = [
  ['core'],
  ['codec', 'routing', 'vhosts', 'elb'],
  ['transport'],
  ['storage', 'http'],
  ['tasks', 'builds', 'live', 'alerts'],
  ['mail', 'uploads'],
  ['process'],
  ['cli'],
]
const layerOf = new Map(LIB_LAYERS.flatMap((names, layer) => names.map((name) => [name, layer])))

/** Why `from` may not import `to` (both repository-relative), or undefined when it may. */
function refusal(from, to) {
  const [top, sub] = from.split('/')
  const [toTop, toSub] = to.split('/')
  if (!['lib', 'roles', 'seed', 'bin'].includes(toTop)) return undefined
  if (top === 'lib') {
    if (toTop !== 'lib') return `lib/ never imports ${toTop}/`
    if (!layerOf.has(sub)) return `lib/${sub} has no layer: place it in LIB_LAYERS in eslint.config.js`
    if (toSub === sub) return undefined
    if (!layerOf.has(toSub)) return `lib/${toSub} has no layer: place it in LIB_LAYERS in eslint.config.js`
    return layerOf.get(toSub) < layerOf.get(sub) ? undefined : `lib/${sub} (layer ${layerOf.get(sub)}) may not import lib/${toSub} (layer ${layerOf.get(toSub)}): imports point down`
  }
  if (top === 'roles') {
    if (from === 'roles/registry.ts' && toTop !== 'bin') return undefined
    if (toTop === 'roles' && toSub === sub) return undefined
    return toTop === 'lib' ? undefined : `roles/${sub} may import lib/ and its own folder only (roles never import each other)`
  }
  if (top === 'seed') return toTop === 'lib' || toTop === 'seed' ? undefined : 'seed/ may import lib/ and seed/ only'
  if (top === 'bin') {
    if (toTop === 'roles' && to !== 'roles/registry.ts') return 'bin/ reaches roles only through roles/registry.ts'
    return undefined
  }
  return undefined
}

/** Every import of a relative path: static, side-effect, re-export and `import('…')` with a literal path. */
const layers = {
  meta: { type: 'problem', docs: { description: 'imports point down the layers of STYLE.md' }, schema: [] },
  create(context) {
    const from = relative(context.cwd, context.filename).split('\\').join('/')
    const check = (source) => {
      if (source?.type !== 'Literal' || typeof source.value !== 'string' || !source.value.startsWith('.')) return
      const to = relative(context.cwd, resolve(dirname(context.filename), source.value)).split('\\').join('/').replace(/\.js$/, '.ts')
      const why = refusal(from, to)
      if (why !== undefined) context.report({ node: source, message: `${from} -> ${to}: ${why}` })
    }
    return {
      ImportDeclaration: (node) => check(node.source),
      ExportAllDeclaration: (node) => check(node.source),
      ExportNamedDeclaration: (node) => check(node.source),
      ImportExpression: (node) => check(node.source),
    }
  },
}

export default tseslint.config(
  { ignores: ['dist/**', 'coverage/**', '.tap/**', 'roles/admin/dashboard/client/dist/**'] },
  {
    files: ['**/*.ts', '**/*.js'],
    languageOptions: { parser: tseslint.parser, ecmaVersion: 2023, sourceType: 'module' },
    plugins: { espra: { rules: { layers } } },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      'espra/layers': 'error',
      'no-throw-literal': 'error',
    },
  },
  {
    // What ships is linted with types too, so `throw someString` is refused as well as `throw 'literal'`.
    files: ['bin/**/*.ts', 'lib/**/*.ts', 'roles/**/*.ts', 'seed/**/*.ts'],
    ignores: ['roles/admin/dashboard/client/**'],
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      'no-throw-literal': 'off',
      '@typescript-eslint/only-throw-error': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
    },
  },
)
