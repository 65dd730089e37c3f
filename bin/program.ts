/**
 * The command tree of the espra-node binary (every command, its options and
 * what it runs), apart from bin/espra-node.ts so that tests can read it
 * without running it. Commands load what they run when they run.
 */
import { Command, Option } from 'commander'
import { ROLE_NAMES, NODE_OPTIONS } from '../lib/core/config.js'
import { VERSION } from '../lib/core/version.js'
import { runNodeCommand } from '../lib/cli/run-node.js'
import { configCheck, configDefaults } from '../lib/cli/config-commands.js'
import { MAX_UP_SEEDS, UP_APP_THREADS, UP_CHILDREN } from '../lib/cli/up.js'
import { UP_PORT_SPAN } from '../lib/cli/up-ports.js'
import { loadRole } from '../roles/registry.js'

// Commands load what they run when they run (a node its one role, `up` none), so no process carries every role.
const adminModules = {
  builds: () => import('../lib/cli/admin/builds.js'),
  cli: () => import('../lib/cli/admin/cli.js'),
  maintenance: () => import('../lib/cli/admin/maintenance.js'),
  mailOut: () => import('../lib/cli/admin/mail-out.js'),
  rollingRestart: () => import('../lib/cli/admin/rolling-restart.js'),
  drain: () => import('../lib/cli/admin/drain.js'),
  mailInbound: () => import('../lib/cli/admin/mail-inbound.js'),
  tasks: () => import('../lib/cli/admin/tasks.js'),
  token: () => import('../lib/cli/admin/token.js'),
  uploadToken: () => import('../lib/cli/admin/upload-token.js'),
  vhost: () => import('../lib/cli/admin/vhost.js'),
}

function nodeOptions(cmd: Command): Command {
  for (const o of NODE_OPTIONS) {
    cmd.addOption(new Option(o.flag, `${o.doc} (env ${o.env}; default: ${o.defaultText})`))
  }
  return cmd.option('--config <file>', 'JSON config file; keys are the option names in camelCase (env ESPRA_CONFIG)')
}

function connectOptions(cmd: Command): Command {
  return cmd
    .option('--seed <list>', 'seed meta address host:port (default: from <data-dir>/cluster.json, else 127.0.0.1:7000)')
    .option('--data-dir <dir>', 'state directory written by `up` (default: ./.espra)')
    .option('--secret-file <file>', 'cluster secret file (default: <data-dir>/secret; ESPRA_SECRET overrides)')
}

export function buildProgram(rolesHelpText: string): Command {
  const program = new Command('espra-node')
    .description('Run a real-time web platform on a fleet of machines. Start a node with --role, or a local cluster with `up`.')
    .version(VERSION, '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions()
    .exitOverride()
  nodeOptions(program).addHelpText('after', rolesHelpText).action((_opts, cmd: Command) => runNodeCommand(loadRole, cmd))

  program
    .command('up')
    .description('run a whole cluster on this machine: one seed and one node of every role, until Ctrl-C')
    .option('--data-dir <dir>', 'state directory (secret, cluster.json, logs)', '.espra')
    .option('--children <n>', `children per node (default: ${UP_CHILDREN}; the app node's child runs ${UP_APP_THREADS} worker threads)`)
    .option('--port-base <port>', `use the ${UP_PORT_SPAN} ports <port> to <port>+${UP_PORT_SPAN - 1} instead of the defaults: meta, ${ROLE_NAMES.length} role ports, ${ROLE_NAMES.length} metrics ports, the Live link`)
    .option('--log-level <level>', 'log level of every node', 'info')
    .option('--no-sample-app', 'do not push examples/sample-app as the first build when the cluster has none')
    .option('--datastore <url>', 'where the seeds keep records and tasks: embedded, or postgres://user:password@host:5432/database (env ESPRA_DATASTORE; the password is masked in everything printed)')
    .option('--seeds <n>', `run n seeds (1 to ${MAX_UP_SEEDS}) on one --datastore postgres://…; nodes are given them all, one leads (default: 1)`)
    .action(async (opts) => (await import('../lib/cli/up.js')).runUp(opts))

  const admin = program.command('admin').description('inspect a running cluster over the seed\'s meta port')
  const redisOption = '--redis <url>'
  const redisDoc = 'the task queue is in Redis at this URL, as the app nodes run with (env ESPRA_REDIS; default: the seed\'s embedded queue)'
  connectOptions(admin.command('status').description('cluster summary, task queue counts and every node'))
    .option(redisOption, redisDoc)
    .action(async (opts) => (await adminModules.cli()).adminStatus(opts))
  connectOptions(admin.command('nodes').description('list every node'))
    .option('--json', 'print one JSON array (fields: id, role, region, address, port, pid, children, version, build, health, heartbeatAgeMs, load, ...)')
    .option('--watch', 'redraw the list as nodes join, leave or change health (Ctrl-C to stop)')
    .action(async (opts) => (await adminModules.cli()).adminNodes(opts))

  connectOptions(admin.command('push-build <dir>').description('send a directory as a new app build; every app node and fileserver stages it, then it is made current everywhere at once (with --canary: on the canary app nodes first, then everywhere or rolled back); returns when every one serves it (prints the build id), or names the nodes that refused it (or the failed canary\'s figures) and exits non-zero'))
    .option('--message <text>', 'what this build is (shown by `admin builds`)')
    .option('--timeout <duration>', 'once activated, how long to wait for every node to report the build, e.g. 30s, 2m (staging is bounded by the seed: --init-timeout plus 15s)', '60s')
    .option('--canary <n|percent%>', 'make the build current on this many app nodes first (the first by id; at least 1, never all; needs 2 or more app nodes and a current build), e.g. 1 or 25%; the seed compares their 5xx rate, worker crashes and p99 with the other app nodes and goes on to every node, or rolls the canaries back by itself and this exits 1 with the figures')
    .option('--canary-time <duration>', 'how long the seed watches the canaries, 5s to 1h (default 60s)')
    .action(async (dir: string, opts) => (await adminModules.builds()).adminPushBuild(dir, opts))
  connectOptions(admin.command('builds').description('list app builds: id, time, files, bytes, deploy state, canary, the nodes running it, message; then the running canary and the last one with their figures'))
    .option('--json', 'print one JSON array (fields: id, at, message, files, bytes, current, state, nodes, refused, stage, canary)')
    .action(async (opts) => (await adminModules.builds()).adminBuilds(opts))
  connectOptions(admin.command('rollback <id>').description('make an earlier build current again (staged first, like a push) and wait until every app node and fileserver serves it'))
    .option('--timeout <duration>', 'once activated, how long to wait for every node to report the build', '60s')
    .action(async (id: string, opts) => (await adminModules.builds()).adminRollback(id, opts))

  connectOptions(admin.command('rolling-restart').description('restart every node of a role, a batch of nodes at a time, waiting for each to be healthy again (with --elb-target-group: healthy in its target group too); stops at the first failure'))
    .option('--role <role>', 'the role whose nodes are restarted (required; not seed)')
    .option('--region <name>', 'only the nodes of this region')
    .option('--batch <n>', 'nodes restarted at once', '1')
    .option('--min-healthy <n>', 'never start a batch that leaves fewer healthy nodes of the role than this (default 0)')
    .option('--timeout <duration>', 'how long one node may take, from the request until it is healthy again with every child', '120s')
    .option('--mode <mode>', 'reload: children replaced in place, as SIGHUP does (the node keeps serving); restart: drained, stopped with exit status 75 and started again by the process manager (systemd unit in infra/, espra-node up), then back in service (drained nodes are skipped)', 'reload')
    .option('--grace <duration>', 'restart mode: how long a node keeps serving once out of routing and its ELB target group (0 to 1h; default 20s)')
    .action(async (opts) => (await adminModules.rollingRestart()).adminRollingRestart(opts))
  connectOptions(admin.command('drain <node>').description('take a node out of service: health 503 and out of routing at once, out of its ELB target group, serve through --grace, then stop or idle; kept by the seed across restarts'))
    .option('--then <what>', 'stop (the node runs its stop sequence and exits 0) or idle (it stays up, drained, until undrain)', 'stop')
    .option('--grace <duration>', 'how long the node keeps serving after it left routing and its target group (0 to 1h)', '20s')
    .option('--force', 'store the order for a node id that is not registered now')
    .option('--no-wait', 'return once the seed has the order, without following the node')
    .option('--timeout <duration>', 'how long to follow the node before giving up (the order stands)', '15m')
    .action(async (node: string, opts) => (await adminModules.drain()).adminDrain(node, opts))
  connectOptions(admin.command('undrain <node>').description('put a drained node back in service: health ok, back in routing and its ELB target group'))
    .option('--no-wait', 'return once the seed has lifted the order')
    .option('--timeout <duration>', 'how long to wait for the node to report ok', '15m')
    .action(async (node: string, opts) => (await adminModules.drain()).adminUndrain(node, opts))

  const tasks = connectOptions(admin.command('tasks').description('task queue counts (ready, delayed, leased, dead); --dead lists dead letters with their last error'))
    .option(redisOption, redisDoc)
    .option('--dead', 'also list dead letters: id, name, attempts, when it failed, last error')
    .option('--limit <n>', 'dead letters to list, at most (1-1000)', '100')
    .option('--json', 'print one JSON object: {backend, counts: {ready, delayed, leased, dead}, dead?: [{id, name, attempts, enqueuedAt, failedAt, error, payloadBytes}]}')
    .action(async (opts) => (await adminModules.tasks()).adminTasks(opts))
  connectOptions(tasks.command('retry <id>').description('make a dead letter ready again with its attempts restored; prints its id'))
    .option(redisOption, redisDoc)
    .action(async (id: string, opts) => (await adminModules.tasks()).adminTasksRetry(id, opts))
  connectOptions(tasks.command('rm <id>').description('delete a dead letter (never a ready or leased task); prints that it was deleted'))
    .option(redisOption, redisDoc)
    .action(async (id: string, opts) => (await adminModules.tasks()).adminTasksRm(id, opts))

  // admin mail: inbound handoffs (lib/cli/admin/mail-inbound.ts), then the outbound queue (lib/cli/admin/mail-out.ts).
  const mail = admin.command('mail').description('mail: inbound messages not handed to the app yet, and the outbound queue')
  const inbound = connectOptions(mail.command('inbound').description('inbound messages not handed to the app yet: pending (queued or retrying, last error shown), failed (dead letters), unqueued; oldest first'))
    .option(redisOption, redisDoc)
    .option('--failed', 'only the failed ones (their handoff is a dead letter): retry them with `admin mail inbound retry <id>`')
    .option('--limit <n>', 'messages to list, at most (1-100000)', '100')
    .option('--json', 'print one JSON object: {pending, failed, unqueued, messages: [{id, state, receivedAt, from, to, size, task, attempts, lastError}]}')
    .action(async (opts) => (await adminModules.mailInbound()).adminMailInbound(opts))
  connectOptions(inbound.command('retry <id>').description('hand a failed (or unqueued) inbound message to the app again, its attempts restored; prints its id'))
    .option(redisOption, redisDoc)
    .action(async (id: string, opts) => (await adminModules.mailInbound()).adminMailInboundRetry(id, opts))

  const collect = (value: string, previous: string[] = []) => [...previous, value]
  connectOptions(admin.command('token').description('mint a Live capability token (printed alone on stdout)'))
    .option('--sub <patterns>', 'channel patterns it may subscribe to, e.g. room:* (repeatable, comma-separated)', collect)
    .option('--pub <patterns>', 'channel patterns it may publish to', collect)
    .option('--presence <patterns>', 'channel patterns whose presence it may read', collect)
    .option('--ttl <duration>', 'lifetime, e.g. 15m, 1h', '1h')
    .option('--user <id>', 'member id: the holder counts in presence as this user')
    .option('--info <json>', 'member info shown in presence (a JSON object)')
    .action(async (opts) => (await adminModules.token()).adminToken(opts))
  connectOptions(admin.command('upload-token').description('mint a single-use token for POST /upload on a fileserver (printed alone on stdout)'))
    .option('--max-size <size>', 'largest file accepted, e.g. 10MB', '10MB')
    .option('--types <types>', 'media types accepted, e.g. image/png,image/* (repeatable, comma-separated; default: any)', collect)
    .option('--ttl <duration>', 'lifetime, e.g. 15m, 1h', '1h')
    .option('--owner <id>', 'who the uploaded file belongs to (kept in its record)')
    .option('--channel <name>', 'Live channel that hears progress events')
    .option('--inline', 'let an active type (HTML, SVG, PDF, ...) be shown inline under /f/ rather than downloaded (still sandboxed)')
    .action(async (opts) => (await adminModules.uploadToken()).adminUploadToken(opts))

  const vhost = admin.command('vhost').description('vhost files: which uploaded file a host + path serves on every fileserver')
  connectOptions(vhost.command('set <host> <path> <file>').description('map host + path (e.g. www.example.com /index.html) to an uploaded file (its key, files/<sha256>); fileservers are told at once'))
    .option('--force', 'map a host that is the cluster\'s own (localhost, *.localhost, the seed machine\'s name) although it hides /app, /f, /upload there')
    .action(async (host: string, path: string, file: string, opts) => (await adminModules.vhost()).adminVhostSet(host, path, file, opts))
  connectOptions(vhost.command('rm <host> [path]').description('remove one mapping, or every mapping of the host'))
    .action(async (host: string, path: string | undefined, opts) => (await adminModules.vhost()).adminVhostRm(host, path, opts))
  connectOptions(vhost.command('ls [host]').description('list mappings (of one host, or all): host, path, file, type, size, when set'))
    .option('--json', 'print one JSON array (fields: host, path, file, sha256, size, type, encoding, at)')
    .action(async (host: string | undefined, opts) => (await adminModules.vhost()).adminVhostLs(host, opts))

  const maintenance = connectOptions(admin.command('maintenance').description('planned maintenance: proxies, fileservers and app nodes answer 503 with a page until it ends (alone: print the state)'))
    .option('--json', 'print the state as JSON (null when off)')
    .action(async (opts) => (await adminModules.maintenance()).adminMaintenanceStatus(opts))
  connectOptions(maintenance.command('on').description('start (or replace) planned maintenance on every node at once; it ends by itself at --until'))
    .option('--until <time|duration>', 'required: when it ends, a duration (90s, 90m, 2h, 1d) or an ISO-8601 time with a zone (2026-12-03T06:00Z); at most 7 days')
    .option('--message <text>', 'what the page says, at most 1,000 characters (default: "This service is down for planned maintenance.")')
    .option('--hosts <hosts>', 'only these hosts, e.g. a.example,b.example (repeatable, comma-separated; default: every host)', collect)
    .option('--allow <cidrs>', 'client addresses still served, e.g. 10.0.0.0/8,2001:db8::/32 (repeatable, comma-separated)', collect)
    .option('--json', 'print the state set as JSON')
    .action(async (opts) => (await adminModules.maintenance()).adminMaintenanceOn(opts))
  connectOptions(maintenance.command('off').description('end planned maintenance on every node at once'))
    .action(async (opts) => (await adminModules.maintenance()).adminMaintenanceOff(opts))
  connectOptions(maintenance.command('status').description('print the planned maintenance in force, if any'))
    .option('--json', 'print the state as JSON (null when off)')
    .action(async (opts) => (await adminModules.maintenance()).adminMaintenanceStatus(opts))

  // admin mail: the outbound queue (lib/cli/admin/mail-out.ts).
  connectOptions(mail.command('send').description('queue a message on the outbound queue; prints its id alone on the last line once it is durable'))
    .option(redisOption, redisDoc)
    .option('--from <address>', 'the sender (envelope and From:), required')
    .option('--to <addresses>', 'recipients, comma-separated')
    .option('--cc <addresses>', 'copy recipients, comma-separated')
    .option('--bcc <addresses>', 'blind copy recipients (envelope only), comma-separated')
    .option('--subject <text>', 'the subject', '')
    .option('--text <text>', 'a plain-text body')
    .option('--html <html>', 'an HTML body (instead of --text)')
    .action(async (opts) => (await adminModules.mailOut()).adminMailSend(opts))
  connectOptions(mail.command('show <id>').description('an outbound message: its state per recipient domain and its whole timeline (queued, deferred, delivered, bounced, suppressed, delay-warned, ...)'))
    .option(redisOption, redisDoc)
    .option('--json', 'print the record as JSON (fields: id, from, subject, messageId, size, at, held, dropped, domains, events)')
    .action(async (id: string, opts) => (await adminModules.mailOut()).adminMailShow(id, opts))
  connectOptions(mail.command('queue').description('outbound messages not finished (queued, deferred, held); the flags pick others'))
    .option(redisOption, redisDoc)
    .option('--deferred', 'only messages waiting for a retry')
    .option('--failed', 'messages finished with a bounced or suppressed recipient')
    .option('--held', 'only held messages')
    .option('--all', 'every message kept, delivered ones too')
    .option('--json', 'print one JSON array (fields: id, status, from, subject, at, domains)')
    .action(async (opts) => (await adminModules.mailOut()).adminMailQueue(opts))
  for (const [action, doc] of [
    ['retry', 'try the pending recipients of a message now (the retry wait is skipped)'],
    ['drop', 'stop delivering a message: its pending recipients get no more attempts and no bounce'],
    ['hold', 'stop delivering a message until released (deliveries under way finish)'],
    ['release', 'deliver a held message again, now'],
  ] as const) {
    connectOptions(mail.command(`${action} <id>`).description(`${doc}; prints the id and its status`))
      .option(redisOption, redisDoc)
      .action(async (id: string, opts) => (await adminModules.mailOut()).adminMailControl(action, id, opts))
  }
  mail.command('dkim-record <domain>').description('print the DNS TXT record that publishes the DKIM key of a domain (reads the key file; no seed needed)')
    .option('--dkim <list>', 'domain:selector:keyfile, comma-separated, as the mail nodes run with (default: ESPRA_DKIM)')
    .option('--json', 'print {name, value, strings, zoneLine}')
    .action(async (domain: string, opts) => (await adminModules.mailOut()).adminMailDkimRecord(domain, opts))
  const suppression = mail.command('suppression').description('addresses outbound mail is not sent to (hard bounces, or added here)')
  connectOptions(suppression.command('ls').description('list suppressed addresses: address, since, until, message that bounced, reason'))
    .option('--json', 'print one JSON array (fields: address, at, until, message, reason)')
    .action(async (opts) => (await adminModules.mailOut()).adminSuppressionLs(opts))
  connectOptions(suppression.command('add <address>').description('suppress an address: mail to it fails at once with a suppressed event'))
    .option('--reason <text>', 'why (kept with it)')
    .option('--ttl <duration>', 'how long, e.g. 720h (at most 8760h)', '720h')
    .action(async (address: string, opts) => (await adminModules.mailOut()).adminSuppressionAdd(address, opts))
  connectOptions(suppression.command('rm <address>').description('let mail go to an address again'))
    .action(async (address: string, opts) => (await adminModules.mailOut()).adminSuppressionRm(address, opts))

  const datastore = program.command('datastore').description('move a cluster\'s durable records between datastores')
  datastore
    .command('copy')
    .description('copy every record and task of a stopped embedded seed into PostgreSQL (migrated first; one transaction); prints the counts per kind and per queue')
    .option('--from <dir>', 'the --data-dir of the embedded seed (stopped: a store a running process holds open is refused)')
    .option('--to <url>', 'postgres://user:password@host:5432/database (env ESPRA_DATASTORE, which keeps the password off the command line; masked in everything printed)')
    .option('--force', 'copy into a database that already holds records or tasks: records with the same kind and key are replaced, tasks added')
    .action(async (opts) => (await import('../seed/datastore-copy.js')).runDatastoreCopy(opts))

  const config = program.command('config').description('check or print configuration')
  nodeOptions(config.command('check').description('validate the configuration a node would run with and print it (secret left out)')).action(
    (_opts, cmd: Command) => configCheck(cmd),
  )
  config.command('defaults').description('print every option with its flag, environment variable and default').option('--json', 'as JSON').action((opts) => configDefaults(opts))

  program.command('version').description('print the version').action(() => console.log(VERSION))
  return program
}
