// What keeps an uploaded file passive when served (roles/fileserver/upload-headers.ts).
import t from 'tap'
import { isPassiveType, readUploadMetadata, uploadDisposition, uploadMetadata } from '../../../roles/fileserver/upload-headers.js'

t.test('passive types are shown inline; active, unknown and malformed ones are attachments', async (t) => {
  for (const type of ['image/png', 'image/JPEG', 'video/mp4', 'audio/mpeg', 'font/woff2', 'text/plain; charset=utf-8', 'text/csv', 'application/json']) {
    t.ok(isPassiveType(type), type)
    t.equal(uploadDisposition(type, false, null), 'inline')
  }
  for (const type of ['text/html', 'TEXT/HTML; charset=utf-8', 'image/svg+xml', 'application/xhtml+xml', 'text/xml', 'application/xml', 'application/pdf',
    'text/javascript', 'application/octet-stream', 'multipart/x-mixed-replace', 'video/x+xml', 'image/png, text/html', '', 'nonsense']) {
    t.notOk(isPassiveType(type), JSON.stringify(type))
    t.equal(uploadDisposition(type, false, null), 'attachment')
  }
  t.equal(uploadDisposition('text/html', true, null), 'inline', 'the token allowed inline')
})

t.test('the file name travels percent-encoded, so no header can be split on it', async (t) => {
  t.equal(uploadDisposition('text/html', false, 'my page.html'), "attachment; filename*=UTF-8''my%20page.html")
  t.equal(uploadDisposition('image/png', false, 'ça "x";\r\nSet-Cookie: a=b'), "inline; filename*=UTF-8''%C3%A7a%20%22x%22%3B%0D%0ASet-Cookie%3A%20a%3Db")
  t.equal(uploadDisposition('text/html', false, "it's (1)*"), "attachment; filename*=UTF-8''it%27s%20%281%29%2A")
  t.same(readUploadMetadata(uploadMetadata(true, 'ça.html')), { inline: true, filename: 'ça.html' })
  t.same(readUploadMetadata(uploadMetadata(false, null)), { inline: false, filename: null })
  t.same(readUploadMetadata({ filename: '%zz' }), { inline: false, filename: null }, 'damaged metadata: no name')
  t.same(readUploadMetadata(undefined), { inline: false, filename: null }, 'a cache file of an earlier version')
})
