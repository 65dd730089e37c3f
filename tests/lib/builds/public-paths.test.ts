// Which files of an app build the fileservers serve (lib/builds/public-paths.ts).
import t from 'tap'
import { createPublicFilter, DEFAULT_PUBLIC, globToRegExp, publicPatterns } from '../../../lib/builds/public-paths.js'

t.test('patterns: * within a segment, ? one character, ** whole segments', async (t) => {
  const m = (glob: string, path: string) => globToRegExp(glob).test(path)
  t.ok(m('public/**', 'public/a.css'))
  t.ok(m('public/**', 'public/img/x/y.png'))
  t.notOk(m('public/**', 'public'), 'the folder itself is no file')
  t.notOk(m('public/**', 'publicity/a'))
  t.ok(m('*.html', 'index.html'))
  t.notOk(m('*.html', 'docs/index.html'), '* stays in its segment')
  t.ok(m('**/*.html', 'index.html'), '** may be no segment at all')
  t.ok(m('**/*.html', 'docs/a/index.html'))
  t.ok(m('docs/**/index.html', 'docs/index.html'))
  t.ok(m('app.????????.js', 'app.3f2a9c1d.js'))
  t.notOk(m('a.js', 'aXjs'), 'a dot is a dot')
  t.ok(m('(x)+[y].js', '(x)+[y].js'), 'everything else is literal')
})

t.test('espra.json: default public/**; a "public" list replaces it; bad lists refused', async (t) => {
  t.same(publicPatterns(null), DEFAULT_PUBLIC, 'no espra.json')
  t.same(publicPatterns('{"server": "server/main.js"}'), DEFAULT_PUBLIC, 'no "public" field')
  t.same(publicPatterns('{"public": ["public/**", "favicon.ico"]}'), ['public/**', 'favicon.ico'])
  for (const bad of ['not json', '[]', '{"public": "public/**"}', '{"public": []}', '{"public": ["/etc/**"]}', '{"public": ["../x"]}', '{"public": [1]}', '{"public": ["a%2e"]}']) {
    t.throws(() => publicPatterns(bad), { code: 'ESPRA_ERR_BUILD_INVALID' }, bad)
  }
  const isPublic = createPublicFilter(publicPatterns(null))
  t.ok(isPublic('public/about.html'))
  t.notOk(isPublic('server/main.js'), 'server code is not public by default')
  t.notOk(isPublic('espra.json'))
})
