import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, test } from 'vitest';
import { createSigner, parseSecret } from '../src/signing/sign.ts';

const newSecret = (bytes = 32): string => `whsec_${randomBytes(bytes).toString('base64')}`;
const nowSec = (): number => Math.floor(Date.now() / 1000);

function headersFor(msgId: string, timestampSec: number, signature: string): Record<string, string> {
  return { 'webhook-id': msgId, 'webhook-timestamp': String(timestampSec), 'webhook-signature': signature };
}

describe('parseSecret', () => {
  test('returns the decoded key bytes of a whsec_ secret', () => {
    const key = randomBytes(32);
    const parsed = parseSecret(`whsec_${key.toString('base64')}`);
    expect(Buffer.isBuffer(parsed) && parsed.equals(key)).toBe(true);
  });

  test.each([24, 64])('accepts a %i-byte key', (bytes) => {
    expect(Buffer.isBuffer(parseSecret(newSecret(bytes)))).toBe(true);
  });

  test.each([
    ['no prefix', randomBytes(32).toString('base64'), 'prefix is missing'],
    ['not base64', 'whsec_not*base64!at#all~~~~~~~~~~~~~~~~~~~~', 'not valid base64'],
    ['url-safe base64', `whsec_${randomBytes(33).toString('base64url')}-_`, 'not valid base64'],
    ['unpadded base64', `whsec_${randomBytes(32).toString('base64').replace(/=+$/, '')}`, 'not valid base64'],
    ['16 bytes', newSecret(16), 'decodes to 16 bytes'],
    ['65 bytes', newSecret(65), 'decodes to 65 bytes'],
    ['empty key', 'whsec_', 'decodes to 0 bytes'],
  ])('rejects a secret with %s, without echoing it', (_case, secret, detail) => {
    const parsed = parseSecret(secret);
    expect(Buffer.isBuffer(parsed)).toBe(false);
    const { error } = parsed as { error: string };
    expect(error).toContain('secret must be "whsec_" followed by base64 of 24-64 random bytes');
    expect(error).toContain(detail);
    const encoded = secret.replace(/^whsec_/, '');
    if (encoded.length > 0) expect(error).not.toContain(encoded);
  });

  test('rejects base64 with stray bits in the last character', () => {
    // 25 bytes end in one lone byte: "xy==" where the low 4 bits of y are zero in canonical form.
    // Flipping the lowest bit decodes to the same bytes in Node, but strict decoders may differ.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const canonical = randomBytes(25).toString('base64');
    const last = alphabet.indexOf(canonical.at(-3) ?? '');
    const sloppy = `${canonical.slice(0, -3)}${alphabet[last ^ 1]}==`;
    expect(Buffer.from(sloppy, 'base64').equals(Buffer.from(canonical, 'base64'))).toBe(true);
    const parsed = parseSecret(`whsec_${sloppy}`);
    expect(Buffer.isBuffer(parsed) ? 'accepted' : parsed.error).toContain('not canonical base64');
  });
});

describe('createSigner', () => {
  test('a signature verifies with the standardwebhooks reference library', () => {
    const secret = newSecret();
    const body = '{"type":"invoice.paid","timestamp":"2024-01-01T00:00:00.000Z","data":{"id":42}}';
    const ts = nowSec();
    const signature = createSigner().sign('msg_1', ts, body, [secret]);
    expect(signature).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(new Webhook(secret).verify(body, headersFor('msg_1', ts, signature))).toEqual(JSON.parse(body));
  });

  test('the signature covers non-ASCII text and a 20-digit integer byte for byte', () => {
    const secret = newSecret();
    const body =
      '{"type":"café.créé","timestamp":"2024-01-01T00:00:00.000Z","data":{"n":12345678901234567890,"s":"日本語 🚀"}}';
    const ts = nowSec();
    const signature = createSigner().sign('msg_99', ts, body, [secret]);
    expect(() => new Webhook(secret).verify(body, headersFor('msg_99', ts, signature))).not.toThrow();
    // One digit changed in the big integer must break verification: the payload is signed exactly.
    const tampered = body.replace('12345678901234567890', '12345678901234567891');
    expect(() => new Webhook(secret).verify(tampered, headersFor('msg_99', ts, signature))).toThrow(
      'No matching signature found',
    );
  });

  test('during rotation a receiver holding either secret verifies', () => {
    const [oldSecret, newSecret_] = [newSecret(), newSecret(48)];
    const body = '{"type":"t","timestamp":"2024-01-01T00:00:00.000Z","data":{}}';
    const ts = nowSec();
    const signature = createSigner().sign('msg_7', ts, body, [oldSecret, newSecret_]);
    expect(signature.split(' ')).toHaveLength(2);
    for (const secret of [oldSecret, newSecret_]) {
      expect(() => new Webhook(secret).verify(body, headersFor('msg_7', ts, signature))).not.toThrow();
    }
    expect(() => new Webhook(newSecret()).verify(body, headersFor('msg_7', ts, signature))).toThrow();
  });

  test('the signature depends on the message id and timestamp', () => {
    const secret = newSecret();
    const signer = createSigner();
    const body = '{"a":1}';
    const ts = nowSec();
    const signature = signer.sign('msg_1', ts, body, [secret]);
    expect(signer.sign('msg_1', ts, body, [secret])).toBe(signature);
    expect(signer.sign('msg_2', ts, body, [secret])).not.toBe(signature);
    expect(signer.sign('msg_1', ts + 1, body, [secret])).not.toBe(signature);
    expect(() => new Webhook(secret).verify(body, headersFor('msg_2', ts, signature))).toThrow();
  });

  test('signatures stay correct when the key cache evicts', () => {
    const signer = createSigner({ maxCachedKeys: 2 });
    const secrets = [newSecret(), newSecret(), newSecret()];
    const ts = nowSec();
    for (let round = 0; round < 3; round++) {
      for (const secret of secrets) {
        const signature = signer.sign(`msg_${round}`, ts, '{"r":1}', [secret]);
        expect(() => new Webhook(secret).verify('{"r":1}', headersFor(`msg_${round}`, ts, signature))).not.toThrow();
      }
    }
  });

  test('an invalid secret throws a clear error that does not contain the secret', () => {
    const valid = newSecret();
    const bad = `whsec_${randomBytes(16).toString('base64')}`;
    let message = 'did not throw';
    try {
      createSigner().sign('msg_1', nowSec(), '{}', [valid, bad]);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('cannot sign: secret #2: secret must be "whsec_"');
    expect(message).not.toContain(bad.slice('whsec_'.length));
  });

  test('refuses an empty secret list and a fractional timestamp', () => {
    const signer = createSigner();
    expect(() => signer.sign('msg_1', nowSec(), '{}', [])).toThrow('no secrets');
    expect(() => signer.sign('msg_1', 1.5, '{}', [newSecret()])).toThrow('integer number of seconds');
  });
});
