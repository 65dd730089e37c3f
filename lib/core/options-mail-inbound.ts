/** Mail-role options of the inbound side added after the first slice (other roles ignore these): docs/mail.md. */
import { constant, integer, option, parseSize } from './config-parsers.js'

declare module './config.js' {
  interface NodeConfig {
    /** mail: longest line of a message, in octets without its CRLF (RFC 5322: 998); past it the message is refused 554 5.6.0. */
    readonly mailMaxLineLength: number
    /** mail: largest header section (up to the first empty line), in octets; past it the message is refused 552 5.3.4. */
    readonly mailMaxHeaderSize: number
  }
}

export const MAIL_INBOUND_OPTIONS = [
  option({
    key: 'mailMaxLineLength', flag: '--mail-max-line-length <octets>', env: 'ESPRA_MAIL_MAX_LINE_LENGTH', defaultText: '998',
    doc: 'mail: the longest line a message may have, in octets without its CRLF (998 to 1048576; RFC 5322 sets 998); a longer line refuses the message 554 5.6.0 at the end of DATA (nothing stored)',
    default: constant(998), parse: integer(998, 1024 ** 2),
  }),
  option({
    key: 'mailMaxHeaderSize', flag: '--mail-max-header-size <size>', env: 'ESPRA_MAIL_MAX_HEADER_SIZE', defaultText: '64KB',
    doc: 'mail: the largest header section (everything before the first empty line) a message may have (1KB to 1MB); a larger one refuses the message 552 5.3.4 at the end of DATA (nothing stored)',
    default: constant(64 * 1024), parse: (raw) => {
      const n = parseSize(raw)
      if (n < 1024 || n > 1024 ** 2) throw 'must be a size from 1KB to 1MB'
      return n
    },
  }),
] as const
