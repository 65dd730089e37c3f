/** Live options: history bounds, long-poll, message and backpressure limits, public channels, the internal link. */
import { constant, durationIn, integer, oneOf, option, type OptionArea, parseSize } from './config-parsers.js'
import { InvalidValue } from './errors.js'

/** A comma-separated list (or a config file's array) of channel patterns. */
function channelPatterns(raw: unknown): string[] {
  const list: unknown = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : null
  if (!Array.isArray(list) || list.some((p) => typeof p !== 'string' || !/^[A-Za-z0-9_\-:.@*]{1,128}$/.test(p))) throw new InvalidValue('must be a comma-separated list of channel patterns (letters, digits, _ - : . @ and *)')
  return list as string[]
}

export const LIVE_OPTIONS = [
  option({
    key: 'liveHistorySize', flag: '--live-history-size <n>', env: 'ESPRA_LIVE_HISTORY_SIZE', defaultText: '1000',
    doc: 'live: messages of history kept per channel on its home node (0: none, so every reconnect is recovered:false)',
    parse: integer(0, 1_000_000),
  }),
  option({
    key: 'liveHistoryAge', flag: '--live-history-age <duration>', env: 'ESPRA_LIVE_HISTORY_AGE', defaultText: '5m',
    doc: 'live: history older than this is dropped',
    parse: durationIn(1000, 7 * 24 * 3_600_000),
  }),
  option({
    key: 'liveHistoryBytes', flag: '--live-history-bytes <size>', env: 'ESPRA_LIVE_HISTORY_BYTES', defaultText: '8MB',
    doc: 'live: bytes of messages (their JSON text) one channel keeps as history on its home node, oldest dropped first (0: none)',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n > 1024 ** 3) throw new InvalidValue('must be a size of at most 1GB')
      return n
    },
  }),
  option({
    key: 'livePollTimeout', flag: '--live-poll-timeout <duration>', env: 'ESPRA_LIVE_POLL_TIMEOUT', defaultText: '25s',
    doc: 'live: a long-poll with nothing to deliver answers empty after this',
    parse: durationIn(100, 300_000),
  }),
  option({
    key: 'liveMaxMessage', flag: '--live-max-message <size>', env: 'ESPRA_LIVE_MAX_MESSAGE', defaultText: '64KB',
    doc: 'live: largest message (its data as JSON text) a channel accepts by any path, and largest client frame or HTTP publish body (err 4004 / 413); a WebSocket frame 4KB past it drops the connection',
    details: 'live: largest message (its data as JSON text) a channel accepts by any path (clients, the internal link, `ctx.publish`, upload progress), and largest client frame or HTTP publish body (err 4004 / 413); a WebSocket frame 4KB past it drops the connection',
    parse: (raw) => {
      const n = parseSize(raw)
      if (n < 256 || n > 16 * 1024 ** 2) throw new InvalidValue('must be a size from 256 bytes to 16MB')
      return n
    },
  }),
  option({
    key: 'liveMaxBackpressure', flag: '--live-max-backpressure <size>', env: 'ESPRA_LIVE_MAX_BACKPRESSURE', defaultText: '1MB',
    doc: 'live: unsent bytes a client may fall behind by before it is dropped (it reconnects with since)',
    parse: parseSize,
  }),
  option({
    key: 'livePublic', flag: '--live-public <patterns>', env: 'ESPRA_LIVE_PUBLIC', defaultText: '(none)',
    doc: 'live: channel patterns anyone may subscribe to without a token, e.g. news:*,status',
    default: constant([]), parse: channelPatterns,
  }),
  option({
    key: 'livePresenceCountOnly', flag: '--live-presence-count-only <patterns>', env: 'ESPRA_LIVE_PRESENCE_COUNT_ONLY', defaultText: '(none)',
    doc: 'live: channel patterns whose presence is a count only (no joins and leaves one by one: the count, at most once a second when it changed; no member lists), e.g. stadium:*; the same on every node of a region',
    default: constant([]), parse: channelPatterns,
  }),
  option({
    key: 'liveReplicas', flag: '--live-replicas <n>', env: 'ESPRA_LIVE_REPLICAS', defaultText: '2',
    doc: 'live: nodes that hold each channel\'s history: 2 keeps it on its home and a backup while the region has two or more Live nodes (a publish is answered once both hold it; the backup takes over with the same sequence when the home dies); 1: the home only, its history lost with it; the same on every node of a region',
    details: 'live: nodes that hold each channel\'s history: `2` keeps it on its home and a backup, the first two Live nodes of its rendezvous order (a publish is answered once both hold it; the backup takes over with the same sequence when the home dies); a region with one Live node has no backup and acknowledges at once. `1`: the home only, its history lost with it (the opt-out). The same on every node of a region ([live-protocol.md](live-protocol.md), "Replication")',
    parse: integer(1, 2),
  }),
  option({
    key: 'liveLinkOffset', flag: '--live-link-offset <n>', env: 'ESPRA_LIVE_LINK_OFFSET', defaultText: '2000',
    doc: 'live: the internal link listens on the public port plus this; must be the same on every node of a region',
    parse: integer(1, 60_000),
  }),
  option({
    key: 'liveHomes', flag: '--live-homes <where>', env: 'ESPRA_LIVE_HOMES', defaultText: 'children',
    doc: 'live: what homes channels: children (each child a Live peer of its own: publishes, history and presence stay off the parent; links on the public port + --live-link-offset + 0 to 2 × --children − 1) or node (the parent, one hub for its children, one link port); nodes of a region may differ',
    details: 'live: what homes channels (their history, sequence and presence). `children` (the default): each child is a Live peer of its own, `<node>/<index>.<pid>` in the routing table, homing its share of the channels and linking straight to the other peers, so publishes, history reads and presence never cross the parent; its link listens on the public port + `--live-link-offset` + the child\'s index (a replacement started while the old child still runs takes index + `--children`). A replaced or crashed child is a new peer: with `--live-replicas 2` its channels\' backups take over, with 1 their history is lost. `node`: the parent, one hub its children reach over IPC, one link port (port + `--live-link-offset`), every publish and history read crossing the parent. Nodes of a region may differ ([live-protocol.md](live-protocol.md), "Homes")',
    parse: oneOf(['node', 'children'] as const),
  }),
  // ---- storage (nodes that store files and builds) ----,
] as const

export const LIVE_AREA: OptionArea<typeof LIVE_OPTIONS> = { heading: 'Live', options: LIVE_OPTIONS }
