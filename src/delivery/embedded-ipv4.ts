// IPv6 forms that carry an IPv4 address, and the IPv4 address(es) each may lead to. Pure: no policy here.
// ssrf.ts judges what this finds by the IPv4 rules, so wrapping 127.0.0.1 or 169.254.169.254 in an IPv6
// transition form never changes the answer.
import ipaddr from 'ipaddr.js';

type Cidr = [ipaddr.IPv6, number];

export type Embedding = {
  /** How the IPv4 address is carried, for the reason text: "NAT64 (64:ff9b::/96)". */
  form: string;
  /** Every IPv4 address this form may lead to; all must pass for the IPv6 address to pass. */
  addresses: ipaddr.IPv4[];
};

const v6 = (cidr: string): Cidr => ipaddr.IPv6.parseCIDR(cidr);
const NAT64_WELL_KNOWN = v6('64:ff9b::/96'); // RFC 6052
const NAT64_LOCAL_USE = v6('64:ff9b:1::/48'); // RFC 8215: the operator picks the prefix length inside it
const COMPATIBLE = v6('::/96'); // RFC 4291, deprecated
const TRANSLATED = v6('::ffff:0:0:0/96'); // RFC 6145 (SIIT)
const SIX_TO_FOUR = v6('2002::/16'); // RFC 3056
const TEREDO = v6('2001::/32'); // RFC 4380

const inside = (ip: ipaddr.IPv6, [network, bits]: Cidr) => ip.match(network, bits);

/** The IPv4 address in bits `from`..`from+31` of `ip` (RFC 6052 skips bits 64-71, the "u" octet). */
function bitsAt(ip: ipaddr.IPv6, from: number, skipU = false): ipaddr.IPv4 {
  const bytes = ip.toByteArray();
  const octets: number[] = [];
  for (let i = from / 8; octets.length < 4; i++) if (!(skipU && i === 8)) octets.push(bytes[i]!);
  return new ipaddr.IPv4(octets);
}

const zeroFrom = (ip: ipaddr.IPv6, byte: number) => ip.toByteArray().every((b, i) => i < byte || b === 0);

/**
 * RFC 6052 readings of an address under a NAT64 prefix whose length is not known: /96 (the common one), and
 * the /64, /56 and /48 formats where the address fits them (the "u" octet and the suffix are zero).
 */
function nat64Readings(ip: ipaddr.IPv6): ipaddr.IPv4[] {
  const bytes = ip.toByteArray();
  const readings = [bitsAt(ip, 96)];
  if (bytes[8] === 0) {
    if (zeroFrom(ip, 13)) readings.push(bitsAt(ip, 72)); // /64: v4 in bytes 9-12
    if (zeroFrom(ip, 12)) readings.push(bitsAt(ip, 56, true)); // /56: bytes 7, 9-11
    if (zeroFrom(ip, 11)) readings.push(bitsAt(ip, 48, true)); // /48: bytes 6-7, 9-10
  }
  return readings;
}

/**
 * The IPv4 address(es) `ip` embeds, or undefined for a plain IPv6 address. IPv4-mapped (::ffff:0:0/96) is not
 * listed: ssrf.ts treats it as the IPv4 address itself. `nat64Prefixes`: /96 network-specific NAT64 prefixes
 * besides the well-known one (the allow-list's /96 entries), read the same way.
 */
export function embeddedIPv4(ip: ipaddr.IPv6, nat64Prefixes: readonly Cidr[] = []): Embedding | undefined {
  const parts = ip.parts;
  if (inside(ip, NAT64_WELL_KNOWN)) return { form: 'NAT64 (64:ff9b::/96)', addresses: [bitsAt(ip, 96)] };
  if (inside(ip, NAT64_LOCAL_USE)) return { form: 'NAT64 (64:ff9b:1::/48)', addresses: nat64Readings(ip) };
  const prefix = nat64Prefixes.find((range) => inside(ip, range));
  if (prefix) return { form: `NAT64 (${prefix[0].toString()}/${prefix[1]})`, addresses: [bitsAt(ip, 96)] };
  if (inside(ip, TRANSLATED)) return { form: 'IPv4-translated (::ffff:0:0:0/96)', addresses: [bitsAt(ip, 96)] };
  // :: and ::1 are IPv6's own unspecified and loopback addresses, judged as such.
  if (inside(ip, COMPATIBLE) && (parts[6] !== 0 || parts[7]! > 1)) {
    return { form: 'IPv4-compatible (::/96)', addresses: [bitsAt(ip, 96)] };
  }
  if (inside(ip, SIX_TO_FOUR)) return { form: '6to4 (2002::/16)', addresses: [bitsAt(ip, 16)] };
  if (inside(ip, TEREDO)) {
    // The client's address is stored inverted; the Teredo server's address is carried in the clear.
    const client = bitsAt(ip, 96).octets.map((octet) => octet ^ 0xff);
    return { form: 'Teredo (2001::/32)', addresses: [new ipaddr.IPv4(client), bitsAt(ip, 32)] };
  }
  // ISATAP (RFC 5214): any prefix, interface identifier 0:5efe:a.b.c.d or 200:5efe:a.b.c.d.
  if ((parts[4] === 0 || parts[4] === 0x200) && parts[5] === 0x5efe) {
    return { form: 'ISATAP (…:5efe:a.b.c.d)', addresses: [bitsAt(ip, 96)] };
  }
  return undefined;
}
