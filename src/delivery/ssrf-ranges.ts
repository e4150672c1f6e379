// What the SSRF guard refuses, as data. ssrf.ts decides; this file only names ranges.
// Default-deny: an address passes only if nothing here matches it (and, for IPv6, it is in 2000::/3).
import ipaddr from 'ipaddr.js';

export type Ip = ipaddr.IPv4 | ipaddr.IPv6;
type Cidr = [Ip, number];

/**
 * Reason text for each name `ipaddr.range()` returns (ipaddr.js 2.5), keyed `kind:name` or just `name`.
 * Every name other than `unicast` is refused; a name missing here is refused with the name itself.
 */
const RANGE_LABELS: Readonly<Record<string, string>> = {
  'ipv4:unspecified': 'in "this network" (0.0.0.0/8)',
  'ipv6:unspecified': 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'carrier-grade NAT (100.64.0.0/10)',
  private: 'private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)',
  'ipv4:reserved': 'reserved (240.0.0.0/4)',
  'ipv6:reserved': 'reserved',
  as112: 'an AS112 DNS sink (192.175.48.0/24, 192.31.196.0/24)',
  as112v6: 'an AS112 DNS sink',
  amt: 'AMT multicast tunnelling',
  benchmarking: 'in the benchmarking range (2001:2::/48)',
  uniqueLocal: 'unique-local (fc00::/7)',
  deprecatedSiteLocal: 'site-local (fec0::/10)',
  ipv4Mapped: 'IPv4-mapped (::ffff:0:0/96)',
  rfc6145: 'IPv4-translated (::ffff:0:0:0/96)',
  rfc6052: 'NAT64 (64:ff9b::/96, 64:ff9b:1::/48), which embeds an IPv4 address',
  '6to4': '6to4 (2002::/16), which embeds an IPv4 address',
  teredo: 'Teredo (2001::/32), which embeds an IPv4 address',
  discard: 'discard-only (100::/64)',
  deprecatedOrchid: 'ORCHID (2001:10::/28)',
  orchid2: 'ORCHIDv2 (2001:20::/28)',
  droneRemoteIdProtocolEntityTags: 'a drone remote ID tag (2001:30::/28)',
  segmentRouting: 'an SRv6 segment identifier (5f00::/16)',
};

/** The reason for an ipaddr.js range name; undefined for `unicast`. */
export function rangeLabel(ip: Ip): string | undefined {
  const name = ip.range();
  if (name === 'unicast') return undefined;
  return RANGE_LABELS[`${ip.kind()}:${name}`] ?? RANGE_LABELS[name] ?? name;
}

function parsed(entries: readonly (readonly [string, string])[]): { range: Cidr; what: string }[] {
  return entries.map(([cidr, what]) => ({ range: ipaddr.parseCIDR(cidr), what }));
}

/**
 * Ranges ipaddr.js lumps together as `reserved` or leaves as `unicast`, each with its own reason.
 * Consulted only when `range()` says `unicast` or `reserved`, so ipaddr's narrower names (::1, 2001::/32, …) win.
 */
export const EXTRA_RANGES = parsed([
  ['192.0.0.0/24', 'an IETF protocol assignment (192.0.0.0/24)'],
  ['192.0.2.0/24', 'in a documentation range (192.0.2.0/24)'],
  ['198.51.100.0/24', 'in a documentation range (198.51.100.0/24)'],
  ['203.0.113.0/24', 'in a documentation range (203.0.113.0/24)'],
  ['198.18.0.0/15', 'in the benchmarking range (198.18.0.0/15)'],
  ['192.88.99.0/24', 'a deprecated 6to4 relay (192.88.99.0/24)'],
  ['::/96', 'IPv4-compatible (::/96), which embeds an IPv4 address'],
  ['2001:db8::/32', 'in the documentation range (2001:db8::/32)'],
  ['3fff::/20', 'in the documentation range (3fff::/20)'],
  ['2001::/23', 'an IETF protocol assignment (2001::/23)'],
]);

/** IANA's IPv6 global unicast space; everything outside it is reserved or special-purpose. */
export const GLOBAL_UNICAST_V6: Cidr = ipaddr.parseCIDR('2000::/3');

/**
 * Cloud instance-metadata and host-agent addresses: credentials live behind them. Refused even under
 * ALLOW_PRIVATE_NETWORKS and broad allow-list entries, and in every IPv6 form that embeds them (ssrf.ts judges
 * the embedded IPv4 address); only an allow-list entry naming the single address (a /32 or /128) lets one
 * through. Keys are ipaddr's canonical `toString()`, without a zone.
 */
export const METADATA_ADDRESSES: ReadonlyMap<string, string> = new Map(
  (
    [
      ['169.254.169.254', 'AWS, GCP, Azure, OpenStack instance metadata'],
      ['fd00:ec2::254', 'AWS instance metadata over IPv6'],
      ['fe80::a9fe:a9fe', 'OpenStack instance metadata over IPv6'],
      ['169.254.170.2', 'AWS ECS task metadata'],
      ['169.254.170.23', 'AWS EKS Pod Identity agent'],
      ['fd00:ec2::23', 'AWS EKS Pod Identity agent over IPv6'],
      ['100.100.100.200', 'Alibaba Cloud instance metadata'],
      ['169.254.0.23', 'Tencent Cloud instance metadata'],
      ['168.63.129.16', 'Azure WireServer'],
      ['192.0.0.192', 'Oracle Cloud instance metadata'],
    ] as const
  ).map(([address, owner]) => [ipaddr.parse(address).toString(), `a cloud metadata endpoint (${owner})`]),
);
