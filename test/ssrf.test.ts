import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, test } from 'vitest';
import { createHttpClient } from '../src/delivery/http.ts';
import {
  checkUrl,
  classify,
  createGuardedConnector,
  parseCidrs,
  type GuardedConnectorOptions,
  type SsrfPolicy,
} from '../src/delivery/ssrf.ts';

const DEFAULT: SsrfPolicy = { allowPrivateNetworks: false, allowCidrs: [], allowHttp: false };
const policy = (overrides: Partial<SsrfPolicy>): SsrfPolicy => ({ ...DEFAULT, ...overrides });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('classify', () => {
  // [what the reason must say, addresses in several notations], all refused under the default policy.
  const refused: [string, string][] = [
    ['is loopback', '127.0.0.1 127.255.255.254 2130706433 0x7f.1 0x7f000001 0177.0.0.1 127.1 ::1 ::0.0.0.1'],
    ['is loopback', '0:0:0:0:0:0:0:1 0000:0000:0000:0000:0000:0000:0000:0001 ::ffff:127.0.0.1 0:0:0:0:0:ffff:7f00:1'],
    ['is private', '10.0.0.1 012.1.2.3 167772161 172.16.0.1 172.31.255.255 0xac.16.0.1 192.168.1.1 192.168.258'],
    ['is private', '::ffff:10.0.0.1 ::ffff:c0a8:101 ::FFFF:192.168.0.1'],
    ['is carrier-grade NAT', '100.64.0.1 100.127.255.255 1681915905 100.100.100.200'],
    ['is link-local', '169.254.0.1 169.254.169.254 0xa9.0xfe.0xa9.0xfe 2852039166 ::ffff:169.254.169.254'],
    ['is link-local', 'fe80::1 febf::1 fe80::1%eth0 FE80:0:0:0:0:0:0:1'],
    ['is in "this network" (0.0.0.0/8)', '0.0.0.0 0 0.1.2.3 ::ffff:0.0.0.0'],
    ['is unspecified', ':: 0:0:0:0:0:0:0:0'],
    ['benchmarking', '198.18.0.1 198.19.255.255 2001:2::1'],
    ['documentation', '192.0.2.1 198.51.100.7 203.0.113.255 2001:db8::1 2001:0db8:0000::0001 3fff::1'],
    ['is reserved (240.0.0.0/4)', '240.0.0.1 250.1.2.3 0xf0.0.0.1'],
    ['is broadcast', '255.255.255.255 4294967295 0xffffffff'],
    ['is multicast', '224.0.0.1 239.255.255.250 0xe0000001 ::ffff:224.0.0.1 ff02::1 ff05::1:3'],
    ['IETF protocol assignment', '192.0.0.1 192.0.0.8 192.0.0.192 2001:1::1'],
    ['is unique-local (fc00::/7)', 'fc00::1 fd12:3456:789a::1 fd00:ec2::254'],
    ['is site-local (fec0::/10)', 'fec0::1 feff::1'],
    ['is IPv4-compatible', '::7f00:1 ::127.0.0.1 ::8.8.8.8 0:0:0:0:0:0:a00:1'],
    ['is NAT64', '64:ff9b::7f00:1 64:ff9b::10.0.0.1 64:ff9b::8.8.8.8 64:ff9b:1::a00:1'],
    ['is 6to4', '2002:7f00:1::1 2002:a00:1:: 2002:c0a8:101::1'],
    ['is Teredo', '2001::1 2001:0:4136:e378:8000:63bf:3fff:fdd2'],
    ['is discard-only', '100::1 100::ffff:ffff:ffff:ffff'],
    ['ORCHID', '2001:10::1 2001:20::1'],
    ['is IPv4-translated', '::ffff:0:7f00:1'],
    ['SRv6', '5f00::1'],
    ['is outside IPv6 global unicast (2000::/3)', '4000::1 e000::1 1::1'],
    ['is a cloud metadata endpoint (Azure WireServer)', '168.63.129.16'],
  ];
  test.each(refused.flatMap(([what, addresses]) => addresses.split(' ').map((address) => [address, what])))(
    'refuses %s: %s',
    (address, what) => {
      const verdict = classify(address, DEFAULT);
      expect(verdict.allowed ? 'allowed' : verdict.reason).toContain(what);
    },
  );

  test.each([
    ['0x7f.1', '127.0.0.1 is loopback'],
    ['::127.0.0.1', '::7f00:1 is IPv4-compatible (::/96), which embeds an IPv4 address'],
    ['10.1.2.3', '10.1.2.3 is private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)'],
    ['100.100.100.200', '100.100.100.200 is carrier-grade NAT (100.64.0.0/10)'],
    ['192.0.0.192', '192.0.0.192 is an IETF protocol assignment (192.0.0.0/24)'],
    ['64:ff9b::a00:1', '64:ff9b::a00:1 is NAT64 (64:ff9b::/96, 64:ff9b:1::/48), which embeds an IPv4 address'],
    ['2001:db8::1', '2001:db8::1 is in the documentation range (2001:db8::/32)'],
    ['nope', '"nope" is not an IP address'],
  ])('names why %s is refused', (address, reason) => {
    expect(classify(address, DEFAULT)).toEqual({ allowed: false, reason: `blocked destination: ${reason}` });
  });

  // ::ffff:8.8.8.8 is IPv4-mapped: judged as the IPv4 address it connects to. 134744072 is 8.8.8.8;
  // 172.32.0.1 and 100.128.0.1 sit just past 172.16/12 and 100.64/10.
  const allowed = '8.8.8.8 1.1.1.1 134744072 172.32.0.1 100.128.0.1 ::ffff:8.8.8.8 2606:4700:4700::1111';
  test.each([...allowed.split(' '), '2001:4860:4860::8888', '2a00:1450:4001:82b::200e'])(
    'allows global unicast %s',
    (address) => {
      expect(classify(address, DEFAULT)).toEqual({ allowed: true });
    },
  );
});

describe('opt-ins', () => {
  test('allowPrivateNetworks lets private and loopback through, never metadata', () => {
    const open = policy({ allowPrivateNetworks: true });
    for (const address of ['10.1.2.3', '127.0.0.1', '::1', 'fd12::1', '169.254.1.1']) {
      expect(classify(address, open), address).toEqual({ allowed: true });
    }
    expect(classify('169.254.169.254', open)).toEqual({
      allowed: false,
      reason:
        'blocked destination: 169.254.169.254 is a cloud metadata endpoint (AWS, GCP, Azure, OpenStack instance metadata)',
    });
    for (const address of ['168.63.129.16', '100.100.100.200', 'fd00:ec2::254', '::ffff:169.254.169.254']) {
      expect(classify(address, open).allowed, address).toBe(false);
    }
  });

  test('an allow-list entry lets its range through and nothing else', () => {
    const loopback = policy({ allowCidrs: ['127.0.0.0/8'] });
    expect(classify('127.0.0.1', loopback)).toEqual({ allowed: true });
    expect(classify('::ffff:127.0.0.1', loopback)).toEqual({ allowed: true });
    expect(classify('10.0.0.1', loopback).allowed).toBe(false);
    expect(classify('::1', loopback).allowed).toBe(false);
  });

  test('metadata passes only when the allow-list names that single address', () => {
    expect(classify('169.254.169.254', policy({ allowCidrs: ['169.254.0.0/16'] })).allowed).toBe(false);
    expect(classify('169.254.1.1', policy({ allowCidrs: ['169.254.0.0/16'] })).allowed).toBe(true);
    expect(classify('168.63.129.16', policy({ allowCidrs: ['0.0.0.0/0'] })).allowed).toBe(false);
    expect(classify('169.254.169.254', policy({ allowCidrs: ['169.254.169.254/32'] }))).toEqual({ allowed: true });
    expect(classify('fd00:ec2::254', policy({ allowCidrs: ['fd00:ec2::254/128'] }))).toEqual({ allowed: true });
  });
});

describe('IPv4 embedded in IPv6 is judged as that IPv4 address', () => {
  // Cloud metadata in every notation and every IPv6 form that carries an IPv4 address.
  const metadataForms: [string, string][] = [
    ['169.254.169.254', 'dotted'],
    ['2852039166', 'decimal'],
    ['0xa9fea9fe', 'hex'],
    ['0251.0376.0251.0376', 'octal'],
    ['169.254.43518', 'short form'],
    ['::ffff:169.254.169.254', 'IPv4-mapped'],
    ['::ffff:a9fe:a9fe', 'IPv4-mapped, hex'],
    ['64:ff9b::a9fe:a9fe', 'NAT64 well-known prefix'],
    ['64:ff9b::169.254.169.254', 'NAT64 well-known prefix, dotted'],
    ['64:ff9b:1::a9fe:a9fe', 'NAT64 local-use prefix, /96 format'],
    ['64:ff9b:1:0:a9:fea9:fe00:0', 'NAT64 local-use prefix, /64 format'],
    ['64:ff9b:1:a9:fe:a9fe::', 'NAT64 local-use prefix, /56 format'],
    ['64:ff9b:1:a9fe:a9:fe00::', 'NAT64 local-use prefix, /48 format'],
    ['2002:a9fe:a9fe::1', '6to4'],
    ['2001:0:4136:e378:8000:63bf:5601:5601', 'Teredo (client address inverted)'],
    ['2001:0:a9fe:a9fe:8000:63bf:f7f7:f7f7', 'Teredo server'],
    ['::a9fe:a9fe', 'IPv4-compatible'],
    ['::169.254.169.254', 'IPv4-compatible, dotted'],
    ['::ffff:0:a9fe:a9fe', 'IPv4-translated'],
    ['::ffff:0:169.254.169.254', 'IPv4-translated, dotted'],
    ['fe80::5efe:a9fe:a9fe', 'ISATAP, link-local'],
    ['2606:4700::200:5efe:a9fe:a9fe', 'ISATAP, global prefix'],
    ['fe80::a9fe:a9fe', 'OpenStack metadata over IPv6'],
    ['fe80::a9fe:a9fe%eth0', 'OpenStack metadata over IPv6, with a zone'],
    ['fd00:ec2::254', 'AWS metadata over IPv6'],
    ['169.254.170.2', 'AWS ECS'],
    ['169.254.170.23', 'AWS EKS Pod Identity'],
    ['fd00:ec2::23', 'AWS EKS Pod Identity over IPv6'],
    ['169.254.0.23', 'Tencent Cloud'],
    ['64:ff9b::a9fe:17', 'Tencent Cloud via NAT64'],
    ['100.100.100.200', 'Alibaba Cloud'],
    ['64:ff9b::6464:64c8', 'Alibaba Cloud via NAT64'],
    ['168.63.129.16', 'Azure WireServer'],
    ['2002:a83f:8110::', 'Azure WireServer via 6to4'],
    ['192.0.0.192', 'Oracle Cloud'],
    ['::ffff:0:c000:c0', 'Oracle Cloud, IPv4-translated'],
  ];
  const optIns: [string, SsrfPolicy][] = [
    ['the default policy', DEFAULT],
    ['ALLOW_PRIVATE_NETWORKS', policy({ allowPrivateNetworks: true })],
    ['ALLOWED_CIDRS=64:ff9b::/96', policy({ allowCidrs: ['64:ff9b::/96'] })],
    ['ALLOWED_CIDRS covering everything', policy({ allowCidrs: ['0.0.0.0/0', '::/0'] })],
    [
      'both, with every transition prefix listed',
      policy({
        allowPrivateNetworks: true,
        allowCidrs: ['0.0.0.0/0', '::/0', '64:ff9b::/96', '64:ff9b:1::/48', '2002::/16', '2001::/32'],
      }),
    ],
  ];
  test.each(optIns.flatMap(([name, p]) => metadataForms.map(([address, form]) => [address, form, name, p] as const)))(
    'refuses metadata %s (%s) under %s',
    (address, _form, _name, p) => {
      const verdict = classify(address, p);
      expect(verdict.allowed ? 'allowed' : verdict.reason).toMatch(/^blocked destination: /);
      if (p.allowPrivateNetworks) expect(verdict.allowed || verdict.reason).toContain('a cloud metadata endpoint');
    },
  );

  test.each([
    ['64:ff9b::a9fe:a9fe', 'NAT64 (64:ff9b::/96) for 169.254.169.254, which is a cloud metadata endpoint (AWS'],
    ['2001:0:4136:e378:8000:63bf:5601:5601', 'Teredo (2001::/32) for 169.254.169.254, which is a cloud metadata'],
    ['::ffff:0:a9fe:a9fe', 'IPv4-translated (::ffff:0:0:0/96) for 169.254.169.254, which is a cloud metadata'],
    ['fe80::a9fe:a9fe', 'fe80::a9fe:a9fe is a cloud metadata endpoint (OpenStack instance metadata over IPv6)'],
    ['169.254.0.23', '169.254.0.23 is a cloud metadata endpoint (Tencent Cloud instance metadata)'],
  ])('under ALLOW_PRIVATE_NETWORKS, %s is refused naming what it embeds', (address, reason) => {
    const verdict = classify(address, policy({ allowPrivateNetworks: true }));
    expect(verdict.allowed ? 'allowed' : verdict.reason).toContain(reason);
  });

  // ALLOWED_CIDRS=64:ff9b::/96 is how an IPv6-only cluster reaches IPv4 receivers through NAT64: it admits the
  // wrapped public addresses, never what the IPv4 rules refuse.
  const nat64 = policy({ allowCidrs: ['64:ff9b::/96'] });
  test.each(['64:ff9b::808:808', '64:ff9b::8.8.8.8', '64:ff9b::101:101', '64:ff9b::ac20:1'])(
    'ALLOWED_CIDRS=64:ff9b::/96 admits %s, a wrapped public address',
    (address) => {
      expect(classify(address, nat64)).toEqual({ allowed: true });
    },
  );
  const private4 = 'private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)';
  test.each([
    ['64:ff9b::7f00:1', '64:ff9b::7f00:1', '127.0.0.1, which is loopback'],
    ['64:ff9b::127.0.0.1', '64:ff9b::7f00:1', '127.0.0.1, which is loopback'],
    ['64:ff9b::a00:1', '64:ff9b::a00:1', `10.0.0.1, which is ${private4}`],
    ['64:ff9b::c0a8:101', '64:ff9b::c0a8:101', `192.168.1.1, which is ${private4}`],
    ['64:ff9b::6440:1', '64:ff9b::6440:1', '100.64.0.1, which is carrier-grade NAT (100.64.0.0/10)'],
    ['64:ff9b::a9fe:a9fe', '64:ff9b::a9fe:a9fe', '169.254.169.254, which is link-local'],
    ['64:ff9b::0:0', '64:ff9b::', '0.0.0.0, which is in "this network" (0.0.0.0/8)'],
    ['64:ff9b::e000:1', '64:ff9b::e000:1', '224.0.0.1, which is multicast'],
  ])('ALLOWED_CIDRS=64:ff9b::/96 refuses %s', (address, shown, embedded) => {
    expect(classify(address, nat64)).toEqual({
      allowed: false,
      reason: `blocked destination: ${shown} is NAT64 (64:ff9b::/96) for ${embedded}`,
    });
  });

  test('a listed IPv4 range opens its wrapped form only together with the IPv6 prefix', () => {
    expect(classify('64:ff9b::a00:1', policy({ allowCidrs: ['10.0.0.0/8'] })).allowed).toBe(false);
    expect(classify('64:ff9b::a00:1', policy({ allowCidrs: ['10.0.0.0/8', '64:ff9b::/96'] }))).toEqual({
      allowed: true,
    });
    // IPv4-mapped is the IPv4 address itself: an IPv6 entry over ::ffff:0:0/96 opens nothing.
    expect(classify('::ffff:127.0.0.1', policy({ allowCidrs: ['::ffff:0:0/96'] })).allowed).toBe(false);
  });

  test('a /96 allow-list entry is read as a network-specific NAT64 prefix', () => {
    const nsp = policy({ allowCidrs: ['2001:db8:64::/96'] });
    expect(classify('2001:db8:64::808:808', nsp)).toEqual({ allowed: true });
    expect(classify('2001:db8:64::7f00:1', nsp)).toEqual({
      allowed: false,
      reason: 'blocked destination: 2001:db8:64::7f00:1 is NAT64 (2001:db8:64::/96) for 127.0.0.1, which is loopback',
    });
  });

  test('the local-use NAT64 prefix is judged in every RFC 6052 format the address fits', () => {
    const local = policy({ allowCidrs: ['64:ff9b:1::/48'] });
    expect(classify('64:ff9b:1::808:808', local)).toEqual({ allowed: true });
    expect(classify('64:ff9b:1::7f00:1', local).allowed).toBe(false);
    expect(classify('64:ff9b:1:7f:0:1::', local).allowed).toBe(false); // 127.0.0.1 in the /48 format
  });

  test('6to4 and Teredo opened by prefix still judge the IPv4 addresses they carry', () => {
    const transition = policy({ allowCidrs: ['2002::/16', '2001::/32'] });
    expect(classify('2002:808:808::1', transition)).toEqual({ allowed: true });
    expect(classify('2002:7f00:1::1', transition)).toMatchObject({
      reason: 'blocked destination: 2002:7f00:1::1 is 6to4 (2002::/16) for 127.0.0.1, which is loopback',
    });
    expect(classify('2001:0:4136:e378:8000:63bf:f7f7:f7f7', transition)).toEqual({ allowed: true }); // 8.8.8.8
    expect(classify('2001:0:4136:e378:8000:63bf:80ff:fffe', transition).allowed).toBe(false); // 127.0.0.1
    expect(classify('2001:0:7f00:1:8000:63bf:f7f7:f7f7', transition).allowed).toBe(false); // server 127.0.0.1
  });

  test('under ALLOW_PRIVATE_NETWORKS a wrapped private address passes like the address itself', () => {
    const open = policy({ allowPrivateNetworks: true });
    for (const address of ['64:ff9b::a00:1', '2002:a00:1::', '::ffff:0:7f00:1', '::a00:1']) {
      expect(classify(address, open), address).toEqual({ allowed: true });
    }
  });
});

describe('parseCidrs', () => {
  test('reads a comma or space separated list, normalising entries', () => {
    expect(parseCidrs('10.0.0.0/8, fd00::/8  169.254.169.254,FD00:EC2::254')).toEqual([
      '10.0.0.0/8',
      'fd00::/8',
      '169.254.169.254/32',
      'fd00:ec2::254/128',
    ]);
    expect(parseCidrs('')).toEqual([]);
  });

  const notCidr = 'is not a CIDR range or IP address (expected e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)';
  test.each([
    ['10.0.0.0/8, banana', `"banana" ${notCidr}`],
    ['10.0.0.0/33', `"10.0.0.0/33" ${notCidr}`],
    ['10.1/16', `"10.1/16" ${notCidr}`],
    ['10.0.0.1/8', '"10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?'],
    ['fd00::1/8', '"fd00::1/8" has host bits set; did you mean fd00::/8?'],
  ])('names the bad entry in %j', (text, error) => {
    expect(parseCidrs(text)).toEqual({ error });
  });
});

describe('checkUrl', () => {
  const refusedUrls: [string, string][] = [
    ['ftp://example.com/', 'URL scheme "ftp:" is not allowed; use https'],
    ['http://example.com/', 'URL scheme "http:" is not allowed; use https'],
    ['file:///etc/passwd', 'URL scheme "file:" is not allowed; use https'],
    [
      'https://user:pass@example.com/ https://user@example.com/ https://:pass@x.test/',
      'URL must not contain credentials',
    ],
    ['not-a-url', 'not a valid URL'],
    [
      'https://127.0.0.1/ https://2130706433/ https://0x7f.1/ https://0177.0.0.1/ https://127.1:8443/x https://127.0.0.1./',
      'blocked destination: 127.0.0.1 is loopback',
    ],
    ['https://[::1]/ https://[0:0:0:0:0:0:0:1]:8443/', 'blocked destination: ::1 is loopback'],
    ['https://[::ffff:127.0.0.1]/ https://[::ffff:7f00:1]/', 'blocked destination: ::ffff:127.0.0.1 is loopback'],
    ['https://169.254.169.254/latest/meta-data/', 'blocked destination: 169.254.169.254 is link-local'],
    ['https://[::ffff:a9fe:a9fe]/', 'blocked destination: ::ffff:169.254.169.254 is link-local'],
    ['https://[fd00:ec2::254]/', 'blocked destination: fd00:ec2::254 is unique-local (fc00::/7)'],
    ['https://168.63.129.16/', 'blocked destination: 168.63.129.16 is a cloud metadata endpoint (Azure WireServer)'],
  ];
  test.each(refusedUrls.flatMap(([urls, reason]) => urls.split(' ').map((url) => [url, reason])))(
    'refuses %s',
    (url, reason) => {
      expect(checkUrl(url, DEFAULT)).toEqual({ ok: false, reason });
    },
  );

  test('with allowHttp, http passes and the hint names both schemes', () => {
    const withHttp = policy({ allowHttp: true });
    expect(checkUrl('http://example.com/hooks', withHttp)).toMatchObject({ ok: true });
    expect(checkUrl('ws://example.com/', withHttp)).toEqual({
      ok: false,
      reason: 'URL scheme "ws:" is not allowed; use https or http',
    });
  });

  test.each([
    ['https://8.8.8.8/hooks', '8.8.8.8'],
    ['https://134744072/hooks', '8.8.8.8'],
    ['https://[2606:4700:4700::1111]/hooks', '[2606:4700:4700::1111]'],
    ['https://[::ffff:8.8.8.8]/', '[::ffff:808:808]'],
    ['https://example.com:8443/hooks', 'example.com'],
    ['https://example.com./x', 'example.com.'],
    ['https://bücher.example/', 'xn--bcher-kva.example'],
    ['https://localhost/', 'localhost'], // a name: its addresses are refused at connect time
  ])('allows %s', (url, hostname) => {
    const result = checkUrl(url, DEFAULT);
    expect(result).toMatchObject({ ok: true });
    expect(result.ok && result.url.hostname).toBe(hostname);
  });

  test('an allow-list lets an IP literal through', () => {
    expect(checkUrl('https://10.2.3.4/hooks', policy({ allowCidrs: ['10.0.0.0/8'] }))).toMatchObject({ ok: true });
  });
});

type Receiver = { port: number; connections: Record<string, number>; localAddresses: string[] };

/** One HTTP receiver listening on 127.0.0.1 and 127.0.0.2 (same port); counts connections per address. */
async function startReceiver(): Promise<Receiver> {
  const receiver: Receiver = { port: 0, connections: { '127.0.0.1': 0, '127.0.0.2': 0 }, localAddresses: [] };
  const listen = async (host: string, port: number): Promise<Server> => {
    const server = createServer((req, res) => {
      receiver.localAddresses.push(req.socket.localAddress ?? '');
      res.setHeader('connection', 'close'); // every request needs a new socket, so each is checked again
      res.end(`hello from ${req.headers.host}`);
    });
    server.on('connection', () => receiver.connections[host]!++);
    server.listen(port, host);
    await once(server, 'listening');
    cleanups.push(async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    });
    return server;
  };
  receiver.port = ((await listen('127.0.0.1', 0)).address() as AddressInfo).port;
  await listen('127.0.0.2', receiver.port);
  return receiver;
}

/** A resolver that answers from a script, one answer list per call (the last repeats), and counts calls. */
function scriptedLookup(...answers: string[][]): { lookup: LookupFunction; calls: string[] } {
  const calls: string[] = [];
  const lookup: LookupFunction = (hostname, _options, callback) => {
    const addresses = answers[Math.min(calls.length, answers.length - 1)]!;
    calls.push(hostname);
    callback(
      null,
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    );
  };
  return { lookup, calls };
}

function guardedAgent(ssrf: SsrfPolicy, opts: GuardedConnectorOptions): { agent: Agent; attempts: string[] } {
  const attempts: string[] = [];
  const connect = createGuardedConnector(ssrf, { ...opts, onConnectAttempt: (address) => attempts.push(address) });
  const agent = new Agent({ connect });
  cleanups.push(() => agent.close());
  return { agent, attempts };
}

async function get(agent: Agent, url: string): Promise<string> {
  const { body } = await request(url, { dispatcher: agent });
  return body.text();
}

describe('createGuardedConnector', () => {
  // 127.0.0.2 plays a public address (allow-listed); 127.0.0.1 stays refused.
  const publicish = policy({ allowCidrs: ['127.0.0.2/32'] });

  test('connects to the checked address, keeping the hostname for the Host header', async () => {
    const receiver = await startReceiver();
    const { lookup, calls } = scriptedLookup(['127.0.0.2']);
    const { agent, attempts } = guardedAgent(publicish, { lookup });
    await expect(get(agent, `http://receiver.test:${receiver.port}/hooks`)).resolves.toBe(
      `hello from receiver.test:${receiver.port}`,
    );
    expect(calls).toEqual(['receiver.test']);
    expect(attempts).toEqual(['127.0.0.2']);
    expect(receiver.localAddresses).toEqual(['127.0.0.2']);
    expect(receiver.connections).toEqual({ '127.0.0.1': 0, '127.0.0.2': 1 });
  });

  // An allowed answer comes first: a guard that let the name through would dial only our receiver.
  test.each([
    [['127.0.0.1'], '127.0.0.1, which is loopback'],
    [['127.0.0.2', '127.0.0.1'], '127.0.0.1, which is loopback'],
    [['127.0.0.2', '10.0.0.1'], '10.0.0.1, which is private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)'],
    [['127.0.0.2', '::ffff:169.254.169.254'], '::ffff:169.254.169.254, which is link-local'],
    [['127.0.0.2', 'fd00:ec2::254'], 'fd00:ec2::254, which is unique-local (fc00::/7)'],
  ])('refuses a name answering %j without a connect attempt', async (answers, reason) => {
    const receiver = await startReceiver();
    const { lookup } = scriptedLookup(answers);
    const { agent, attempts } = guardedAgent(publicish, { lookup });
    await expect(get(agent, `http://internal.test:${receiver.port}/`)).rejects.toMatchObject({
      code: 'ERR_SSRF_BLOCKED',
      message: `blocked destination: internal.test resolves to ${reason}`,
    });
    expect(attempts).toEqual([]);
    expect(receiver.connections).toEqual({ '127.0.0.1': 0, '127.0.0.2': 0 });
  });

  test('a name answering NAT64-wrapped metadata is refused under ALLOWED_CIDRS=64:ff9b::/96', async () => {
    const receiver = await startReceiver();
    const { lookup } = scriptedLookup(['127.0.0.2', '64:ff9b::a9fe:a9fe']);
    const { agent, attempts } = guardedAgent(policy({ allowCidrs: ['127.0.0.2/32', '64:ff9b::/96'] }), { lookup });
    await expect(get(agent, `http://internal.test:${receiver.port}/`)).rejects.toMatchObject({
      code: 'ERR_SSRF_BLOCKED',
      message:
        'blocked destination: internal.test resolves to 64:ff9b::a9fe:a9fe, which is NAT64 (64:ff9b::/96) for 169.254.169.254, which is link-local',
    });
    expect(attempts).toEqual([]);
  });

  test('checks every new socket again, so a rebinding answer is refused', async () => {
    const receiver = await startReceiver();
    const { lookup, calls } = scriptedLookup(['127.0.0.2'], ['127.0.0.1']);
    const { agent, attempts } = guardedAgent(publicish, { lookup });
    const url = `http://rebind.test:${receiver.port}/`;
    await expect(get(agent, url)).resolves.toBe(`hello from rebind.test:${receiver.port}`);
    await expect(get(agent, url)).rejects.toMatchObject({ code: 'ERR_SSRF_BLOCKED' });
    expect(calls).toEqual(['rebind.test', 'rebind.test']);
    expect(attempts).toEqual(['127.0.0.2']);
    expect(receiver.connections).toEqual({ '127.0.0.1': 0, '127.0.0.2': 1 });
  });

  test('checks IP-literal hosts, which never reach a lookup', async () => {
    const receiver = await startReceiver();
    const { lookup, calls } = scriptedLookup(['127.0.0.2']);
    const { agent, attempts } = guardedAgent(publicish, { lookup });
    await expect(get(agent, `http://127.0.0.1:${receiver.port}/`)).rejects.toMatchObject({
      code: 'ERR_SSRF_BLOCKED',
      message: 'blocked destination: 127.0.0.1 is loopback',
    });
    await expect(get(agent, `http://[::1]:${receiver.port}/`)).rejects.toMatchObject({
      message: 'blocked destination: ::1 is loopback',
    });
    await expect(get(agent, `http://127.0.0.2:${receiver.port}/`)).resolves.toBe(
      `hello from 127.0.0.2:${receiver.port}`,
    );
    expect(calls).toEqual([]);
    expect(attempts).toEqual(['127.0.0.2']);
    expect(receiver.connections).toEqual({ '127.0.0.1': 0, '127.0.0.2': 1 });
  });

  test('TLS dials the checked address and sends the hostname as SNI', async () => {
    const serverNames: string[] = [];
    // No certificate: the handshake stops after SNI, which is all this test needs to see.
    const server = createTlsServer({
      SNICallback: (name, cb) => {
        serverNames.push(name);
        cb(new Error('no certificate here'));
      },
    });
    server.on('tlsClientError', () => {});
    server.listen(0, '127.0.0.2');
    await once(server, 'listening');
    cleanups.push(async () => {
      server.close();
      await once(server, 'close');
    });
    const { port } = server.address() as AddressInfo;
    const { lookup } = scriptedLookup(['127.0.0.2']);
    const { agent, attempts } = guardedAgent(publicish, { lookup });
    await expect(get(agent, `https://receiver.test:${port}/`)).rejects.toThrow();
    expect(attempts).toEqual(['127.0.0.2']);
    expect(serverNames).toEqual(['receiver.test']);
  });

  test('a refusal reaches HttpResult with its reason and the ERR_SSRF_BLOCKED code, and no connection', async () => {
    const { lookup } = scriptedLookup(['127.0.0.1']);
    const attempts: string[] = [];
    const connect = createGuardedConnector(DEFAULT, { lookup, onConnectAttempt: (a) => attempts.push(a) });
    const http = createHttpClient({ maxResponseBytes: 1024, connect });
    cleanups.push(() => http.close());
    const result = await http.post('https://internal.test/hooks', {}, '{}', { timeoutMs: 5_000 });
    expect(result).toMatchObject({
      kind: 'error',
      timedOut: false,
      error: 'blocked destination: internal.test resolves to 127.0.0.1, which is loopback',
      code: 'ERR_SSRF_BLOCKED',
    });
    expect(attempts).toEqual([]);
  });

  test('a bad allow-list fails when the connector is built', () => {
    expect(() => createGuardedConnector(policy({ allowCidrs: ['10.0.0.1/8'] }))).toThrow(
      'SSRF allow-list: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?',
    );
  });
});
