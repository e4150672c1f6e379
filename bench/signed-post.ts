// The one way both alternatives send a webhook, so they are measured doing exactly the same work as each other
// (and as outbox-relay): Standard Webhooks HMAC-SHA256 with one cached key, undici keep-alive, body dumped.
import { createHmac, createSecretKey } from 'node:crypto';
import { Agent, request } from 'undici';

const key = createSecretKey(Buffer.from(process.env.SECRET_B64!, 'base64'));
const agent = new Agent({ keepAliveTimeout: 60_000 });

/** POSTs `body` signed as message `id`; resolves to the HTTP status (throws on connection errors). */
export async function signedPost(endpoint: string, id: string, body: string): Promise<number> {
  const ts = Math.floor(Date.now() / 1000);
  const sig = createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
  const res = await request(endpoint, {
    method: 'POST',
    dispatcher: agent,
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(ts),
      'webhook-signature': `v1,${sig}`,
    },
    body,
    headersTimeout: 15_000,
    bodyTimeout: 15_000,
  });
  await res.body.dump();
  return res.statusCode;
}

/** Closes the keep-alive sockets at shutdown. */
export const closeSignedPost = (): Promise<void> => agent.close();
