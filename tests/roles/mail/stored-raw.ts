// The inbound messages whose raw bytes a cluster holds: blobs under mail/in/ (larger messages) and datastore records raw/<id> (small ones).
import { createLogger } from '../../../lib/core/log.js'
import { createDatastoreClient } from '../../../lib/storage/datastore-client.js'
import { listAll } from '../../../lib/storage/datastore.js'
import { createLocalBlobStore } from '../../../lib/storage/local-blob-store.js'
import { createMetaClient } from '../../../lib/transport/meta-client.js'
import { SECRET } from '../../helpers/cluster.js'

/** Message ids by where their raw bytes are. */
export async function storedRaw(cluster: { seedAddress: string; blobDir: string }): Promise<{ blob: string[]; datastore: string[]; all: string[] }> {
  const blobs = await createLocalBlobStore(cluster.blobDir)
  const blob: string[] = []
  for await (const entry of blobs.list('mail/in/')) {
    const m = /\/(m[0-9a-z]+)\.eml$/.exec(entry.key)
    if (m !== null) blob.push(m[1]!)
  }
  await blobs.close()
  const client = createMetaClient({ seeds: [cluster.seedAddress], secret: SECRET, peer: { kind: 'admin' }, maxFrame: 16 * 1024 ** 2, log: createLogger('silent', { role: 'test', node: 't' }), reconnect: false })
  await client.ready
  const datastore: string[] = []
  try {
    for await (const { key } of listAll(createDatastoreClient(client), 'mailInbound', 'raw/')) datastore.push(key.slice('raw/'.length))
  } finally {
    await client.close()
  }
  return { blob: blob.sort(), datastore: datastore.sort(), all: [...blob, ...datastore].sort() }
}
