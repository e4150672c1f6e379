// SSRF guard for customer-typed webhook URLs. Default-deny: only global unicast addresses pass.
// Two layers: checkUrl() when a URL is accepted (scheme, credentials, IP literals), and
// createGuardedConnector() for undici, which checks every address at connect time and dials only
// the addresses it checked (DNS pinning), so a rebinding answer cannot slip past.
import dns from 'node:dns';
import net, { type LookupFunction, type Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import { buildConnector } from 'undici';
import { embeddedIPv4 } from './embedded-ipv4.ts';
import { EXTRA_RANGES, GLOBAL_UNICAST_V6, METADATA_ADDRESSES, rangeLabel, type Ip } from './ssrf-ranges.ts';

export type SsrfPolicy = {
  /** ALLOW_PRIVATE_NETWORKS: every address passes except cloud metadata endpoints. */
  allowPrivateNetworks: boolean;
  /** CIDRs (or single addresses) that pass whatever their range; metadata only when named as a /32 or /128. */
  allowCidrs: readonly string[];
  /** Accept `http:` URLs as well as `https:`. */
  allowHttp: boolean;
};

export const DEFAULT_SSRF_POLICY: SsrfPolicy = Object.freeze({
  allowPrivateNetworks: false,
  allowCidrs: Object.freeze([]),
  allowHttp: false,
});

export const SSRF_BLOCKED = 'ERR_SSRF_BLOCKED';

/** A refused destination. Permanent: retrying cannot help, and the receiver did nothing wrong (no breaker count). */
export class SsrfBlockedError extends Error {
  readonly code = SSRF_BLOCKED;
  constructor(message: string) {
    super(message);
    this.name = 'SsrfBlockedError';
  }
}

export function isSsrfBlocked(err: unknown): err is SsrfBlockedError {
  return (err as { code?: unknown } | null | undefined)?.code === SSRF_BLOCKED;
}

/**
 * Parses an allow-list like `10.0.0.0/8, fd00::/8, 169.254.169.254` (comma or whitespace separated;
 * a bare address means that one address) into normalised CIDRs, or an error naming the bad entry.
 */
export function parseCidrs(text: string): string[] | { error: string } {
  const out: string[] = [];
  for (const entry of text.split(/[\s,]+/).filter(Boolean)) {
    const withPrefix = entry.includes('/') ? entry : `${entry}/${net.isIPv6(entry) ? 128 : 32}`;
    // net.isIP keeps out inet_aton forms (`10.1`, `0x0a.0.0.1`) that read as something else than they look.
    const [address = '', prefix = ''] = withPrefix.split('/');
    if (net.isIP(address) === 0 || !ipaddr.isValidCIDR(withPrefix) || !/^\d{1,3}$/.test(prefix)) {
      return { error: `"${entry}" is not a CIDR range or IP address (expected e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)` };
    }
    const [ip, bits] = ipaddr.parseCIDR(withPrefix);
    const network =
      ip.kind() === 'ipv4'
        ? ipaddr.IPv4.networkAddressFromCIDR(withPrefix)
        : ipaddr.IPv6.networkAddressFromCIDR(withPrefix);
    if (network.toString() !== ip.toString()) {
      return { error: `"${entry}" has host bits set; did you mean ${network.toString()}/${bits}?` };
    }
    out.push(`${network.toString()}/${bits}`);
  }
  return out;
}

type Compiled = {
  allowPrivateNetworks: boolean;
  allow: [Ip, number][];
  /** The allow-list's IPv6 /96 entries: read as NAT64 prefixes, so what they wrap is judged as IPv4. */
  nat64: [ipaddr.IPv6, number][];
};
type Verdict = { allowed: true } | { allowed: false; shown: string; what: string };

const compiledPolicies = new WeakMap<readonly string[], Omit<Compiled, 'allowPrivateNetworks'>>();

function compile(policy: SsrfPolicy): Compiled {
  let lists = compiledPolicies.get(policy.allowCidrs);
  if (!lists) {
    const parsed = parseCidrs(policy.allowCidrs.join(','));
    if (!Array.isArray(parsed)) throw new Error(`SSRF allow-list: ${parsed.error}`);
    const allow = parsed.map((cidr) => ipaddr.parseCIDR(cidr));
    const nat64 = allow.filter(
      (range): range is [ipaddr.IPv6, number] => range[0].kind() === 'ipv6' && range[1] === 96,
    );
    lists = { allow, nat64 };
    compiledPolicies.set(policy.allowCidrs, lists);
  }
  return { allowPrivateNetworks: policy.allowPrivateNetworks, ...lists };
}

function within(ip: Ip, [network, bits]: [Ip, number]): boolean {
  return ip.kind() === network.kind() && ip.match(network, bits);
}

/** What makes `ip` non-global, or undefined when it is global unicast. */
function category(ip: Ip): string | undefined {
  const label = rangeLabel(ip);
  if (label !== undefined && ip.range() !== 'reserved') return label;
  const extra = EXTRA_RANGES.find(({ range }) => within(ip, range));
  if (extra) return extra.what;
  if (label !== undefined) return label;
  if (ip.kind() === 'ipv6' && !within(ip, GLOBAL_UNICAST_V6)) return 'outside IPv6 global unicast (2000::/3)';
  return undefined;
}

// ipaddr.js 2.5 reads `::1.2.3.4` as IPv4-mapped (::ffff:1.2.3.4); RFC 4291 and the kernel read it as
// IPv4-compatible (::102:304), and glibc prints DNS answers in ::/96 that way.
const COMPATIBLE_DOTTED = /^::(\d{1,3}(?:\.\d{1,3}){3})(?:%.*)?$/;

function parseAddress(address: string): Ip {
  const dotted = COMPATIBLE_DOTTED.exec(address)?.[1];
  if (dotted === undefined || !ipaddr.IPv4.isValidFourPartDecimal(dotted)) return ipaddr.parse(address);
  const [a = 0, b = 0, c = 0, d = 0] = ipaddr.IPv4.parse(dotted).octets;
  return new ipaddr.IPv6([0, 0, 0, 0, 0, 0, (a << 8) | b, (c << 8) | d]);
}

/**
 * The decision. IPv4-mapped IPv6 (::ffff:a.b.c.d) is unwrapped and judged as the IPv4 address it connects to,
 * so ::ffff:8.8.8.8 passes and ::ffff:127.0.0.1 does not. Every other form that embeds IPv4 (NAT64, 6to4,
 * Teredo, ISATAP, IPv4-compatible, IPv4-translated) must pass twice: as the IPv6 address (non-global, so only
 * with ALLOW_PRIVATE_NETWORKS or an allow-list entry covering it) and then by what it embeds, judged exactly
 * as that IPv4 address would be. An IPv6 allow-list entry such as 64:ff9b::/96 therefore never admits
 * NAT64-wrapped loopback, and metadata stays refused in every encoding.
 */
function evaluate(address: string, compiled: Compiled): Verdict {
  if (!ipaddr.isValid(address)) return { allowed: false, shown: JSON.stringify(address), what: 'not an IP address' };
  const raw = parseAddress(address);
  if (raw instanceof ipaddr.IPv4) return judge(raw, compiled);
  if (raw.isIPv4MappedAddress()) {
    const ip = raw.toIPv4Address();
    const verdict = judge(ip, compiled);
    return verdict.allowed ? verdict : { ...verdict, shown: `::ffff:${ip.toString()}` };
  }
  const outer = judge(raw, compiled);
  const embedding = embeddedIPv4(raw, compiled.nat64);
  if (!outer.allowed || embedding === undefined) return outer;
  for (const ip of embedding.addresses) {
    const inner = judge(ip, compiled);
    if (!inner.allowed) {
      return {
        allowed: false,
        shown: raw.toString(),
        what: `${embedding.form} for ${ip.toString()}, which is ${inner.what}`,
      };
    }
  }
  return { allowed: true };
}

/** One address as itself: the allow-list (same family only), metadata, ALLOW_PRIVATE_NETWORKS, its range. */
function judge(ip: Ip, { allowPrivateNetworks, allow }: Compiled): Verdict {
  const shown = ip.toString();
  const listed = allow.filter((range) => within(ip, range));
  // A zone (fe80::a9fe:a9fe%eth0) does not change which host answers.
  const canonical = ip instanceof ipaddr.IPv6 ? new ipaddr.IPv6(ip.parts).toString() : shown;
  const metadata = METADATA_ADDRESSES.get(canonical);
  if (metadata !== undefined) {
    if (listed.some(([network, bits]) => bits === (network.kind() === 'ipv4' ? 32 : 128))) return { allowed: true };
    if (allowPrivateNetworks || listed.length > 0) return { allowed: false, shown, what: metadata };
  } else if (allowPrivateNetworks || listed.length > 0) {
    return { allowed: true };
  }
  // Name the range when there is one (169.254.169.254 "is link-local"); metadata that looks public
  // (Azure's 168.63.129.16) has only its own name.
  const what = category(ip) ?? metadata;
  return what === undefined ? { allowed: true } : { allowed: false, shown, what };
}

function literalReason({ shown, what }: { shown: string; what: string }): string {
  return `blocked destination: ${shown} is ${what}`;
}

/**
 * Whether a connection to `address` (any notation ipaddr.js reads: 127.1, 0x7f.0.0.1, 2130706433,
 * ::ffff:127.0.0.1, …) is allowed under `policy`; the reason is written for the endpoint's owner.
 */
export function classify(
  address: string,
  policy: SsrfPolicy = DEFAULT_SSRF_POLICY,
): { allowed: true } | { allowed: false; reason: string } {
  const verdict = evaluate(address, compile(policy));
  return verdict.allowed ? verdict : { allowed: false, reason: literalReason(verdict) };
}

/**
 * Validates a customer-typed webhook URL: scheme, no credentials, a hostname, and, when the host is an
 * IP literal, its address (undici never looks IP literals up, so the connect-time lookup cannot see them).
 * A hostname's addresses are checked at connect time by createGuardedConnector.
 */
export function checkUrl(
  url: string,
  policy: SsrfPolicy = DEFAULT_SSRF_POLICY,
): { ok: true; url: URL } | { ok: false; reason: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, reason: 'not a valid URL' };
  }
  if (parsed.protocol !== 'https:' && !(policy.allowHttp && parsed.protocol === 'http:')) {
    const use = policy.allowHttp ? 'https or http' : 'https';
    return { ok: false, reason: `URL scheme ${JSON.stringify(parsed.protocol)} is not allowed; use ${use}` };
  }
  if (parsed.username !== '' || parsed.password !== '')
    return { ok: false, reason: 'URL must not contain credentials' };
  // WHATWG parsing has already turned 2130706433, 0x7f.1, 0177.0.0.1 and 127.1 into 127.0.0.1.
  const host = unbracket(parsed.hostname);
  if (host === '') return { ok: false, reason: 'URL must have a hostname' };
  if (net.isIP(host) !== 0) {
    const verdict = classify(host, policy);
    if (!verdict.allowed) return { ok: false, reason: verdict.reason };
  }
  return { ok: true, url: parsed };
}

function unbracket(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

export type GuardedConnectorOptions = {
  /** Resolver with dns.lookup's signature; default dns.lookup. Always called with `all: true`. */
  lookup?: LookupFunction;
  /** Called with the address of each TCP connect actually attempted (after every check passed). */
  onConnectAttempt?: (address: string) => void;
  /** Passed to undici's buildConnector (e.g. `timeout`): a connector function makes the Agent ignore its own. */
  connectOptions?: Omit<buildConnector.BuildOptions, 'lookup'>;
};

/**
 * An undici connector (for `new Agent({ connect })`) that refuses, per new socket, any destination
 * `policy` does not allow. The hostname is resolved once per socket; if any answer is refused the
 * connect fails with SsrfBlockedError (code ERR_SSRF_BLOCKED) before a TCP attempt. Otherwise the
 * checked answers are handed to net/tls as the socket's lookup result, so nothing resolves twice.
 * TLS keeps the hostname for SNI and certificate checks.
 */
export function createGuardedConnector(
  policy: SsrfPolicy,
  opts: GuardedConnectorOptions = {},
): buildConnector.connector {
  const compiled = compile(policy); // a bad allow-list fails here, at start, not on the first delivery
  const resolve: LookupFunction = opts.lookup ?? dns.lookup;

  const guardedLookup: LookupFunction = (hostname, options, callback) => {
    const fail = (err: Error) => callback(err, options.all ? [] : '');
    resolve(hostname, { ...options, all: true }, (err, answer, family) => {
      // Answer after the connector has returned, even if `resolve` answered synchronously, so its
      // socket listeners are in place before net starts dialling.
      process.nextTick(() => {
        if (err) return fail(err);
        const addresses =
          typeof answer === 'string' ? [{ address: answer, family: family ?? net.isIP(answer) }] : answer;
        if (addresses.length === 0)
          return fail(Object.assign(new Error(`no addresses for ${hostname}`), { code: 'ENOTFOUND' }));
        for (const { address } of addresses) {
          const verdict = evaluate(address, compiled);
          // One refused answer refuses the name: which answer net would dial first is not ours to predict.
          if (!verdict.allowed) {
            return fail(
              new SsrfBlockedError(
                `blocked destination: ${hostname} resolves to ${verdict.shown}, which is ${verdict.what}`,
              ),
            );
          }
        }
        const [first] = addresses;
        if (options.all) callback(null, addresses);
        else callback(null, first!.address, first!.family);
      });
    });
  };

  const connect = buildConnector({ ...opts.connectOptions, lookup: guardedLookup });

  return (options, callback) => {
    // IP literals never reach a lookup function: check them here (a URL that skipped checkUrl).
    const host = unbracket(options.hostname);
    if (net.isIP(host) !== 0) {
      const verdict = evaluate(host, compiled);
      if (!verdict.allowed) {
        process.nextTick(callback, new SsrfBlockedError(literalReason(verdict)), null);
        return;
      }
    }
    // buildConnector's function returns the socket (its typings say void); 'connectionAttempt' fires per
    // address net actually dials, which lets tests prove a refusal made no attempt at all.
    const socket = connect(options, callback) as unknown as Socket | undefined;
    const onAttempt = opts.onConnectAttempt;
    if (onAttempt) socket?.on('connectionAttempt', (address: string) => onAttempt(address));
  };
}
