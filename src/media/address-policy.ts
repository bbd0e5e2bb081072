import ipaddr from 'ipaddr.js';

/**
 * Which network addresses a media URL may reach. Only public unicast addresses pass: everything a server-side
 * request forgery would aim at (loopback, private networks, cloud metadata on link-local, CGNAT, and the
 * IPv6 forms that embed or tunnel to those) is refused. Range data comes from ipaddr.js.
 */

/** Words for ipaddr.js range names, as they appear in error messages ("a private address 10.0.0.5"). */
const RANGE_WORDS: Readonly<Record<string, string>> = {
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'carrier-grade NAT',
  private: 'private',
  // ipaddr.js files the documentation (TEST-NET), benchmarking (198.18/15) and 240/4 blocks under 'reserved'
  reserved: 'reserved',
  benchmarking: 'benchmarking',
  as112: 'AS112',
  as112v6: 'AS112',
  amt: 'AMT relay',
  uniqueLocal: 'unique-local',
  deprecatedSiteLocal: 'site-local',
  discard: 'discard-only',
  rfc6145: 'IPv4-translated',
  rfc6052: 'local-use NAT64',
  '6to4': '6to4',
  teredo: 'Teredo',
  deprecatedOrchid: 'ORCHID',
  orchid2: 'ORCHIDv2',
  droneRemoteIdProtocolEntityTags: 'drone remote ID',
  segmentRouting: 'segment-routing',
};

/** RFC 6052 well-known NAT64 prefix: the low 32 bits are a real IPv4 destination, vetted as such. */
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');
/**
 * IANA's global unicast block. Everything else in IPv6 is special-purpose or unassigned; notably the
 * deprecated IPv4-compatible form `::a.b.c.d`, which ipaddr.js calls 'unicast'.
 */
const GLOBAL_UNICAST = ipaddr.IPv6.parseCIDR('2000::/3');

const rangeWords = (range: string): string => RANGE_WORDS[range] ?? range;

function classifyIPv4(address: ipaddr.IPv4): string | undefined {
  const range = address.range();
  return range === 'unicast' ? undefined : rangeWords(range);
}

function classifyIPv6(address: ipaddr.IPv6): string | undefined {
  const range: string = address.range();
  if (range === 'ipv4Mapped') {
    const inner = classifyIPv4(address.toIPv4Address());
    return inner === undefined ? undefined : `IPv4-mapped ${inner}`;
  }
  if (range === 'rfc6052' && address.match(NAT64_WELL_KNOWN)) {
    const [high = 0, low = 0] = address.parts.slice(6);
    const inner = classifyIPv4(new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]));
    return inner === undefined ? undefined : `NAT64 ${inner}`;
  }
  if (range !== 'unicast') return rangeWords(range);
  return address.match(GLOBAL_UNICAST) ? undefined : 'non-global IPv6';
}

/**
 * Why `ip` may not be fetched from, in words for an error message (`'private'`, `'IPv4-mapped loopback'`),
 * or undefined when it is a public unicast address. Text that is not an IP address is `'invalid'`.
 * Accepts what ipaddr.js parses (including `[::1]` brackets and `%zone` suffixes).
 */
export function blockedAddressClass(ip: string): string | undefined {
  const text = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  let address: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    address = ipaddr.parse(text);
  } catch {
    return 'invalid';
  }
  return address instanceof ipaddr.IPv4 ? classifyIPv4(address) : classifyIPv6(address);
}

/** True when `ip` is anything but a public unicast address (see {@link blockedAddressClass}). */
export function isBlockedAddress(ip: string): boolean {
  return blockedAddressClass(ip) !== undefined;
}

/**
 * "a private address 10.0.0.5", "an IPv4-mapped loopback address ::ffff:7f00:1" for a blocked address, for
 * error messages; undefined for an address that may be fetched from.
 */
export function describeBlockedAddress(ip: string): string | undefined {
  const words = blockedAddressClass(ip);
  if (words === undefined) return undefined;
  return `${/^(?:[aeio]|u(?!ni))/i.test(words) ? 'an' : 'a'} ${words} address ${ip}`;
}

/**
 * The refusal of a blocked host, saying how to reach it anyway: on-prem storage (MinIO on a private address) is
 * the common, legitimate case, and `media.allowHosts` is the one setting that exempts a host.
 */
export function blockedHostMessage(url: URL, reason: string): string {
  return `${reason}, which is not fetched; to allow this host, add "${url.host}" to media.allowHosts in the config file`;
}

/** Hosts exempt from the address check, parsed once from `allowHosts` configuration. */
export interface AllowHosts {
  /** Hostnames (as the URL parser writes them: lower case, IPv6 in brackets) allowed on any port. */
  readonly anyPort: ReadonlySet<string>;
  /** `hostname:port` pairs allowed on that port only. */
  readonly onPort: ReadonlySet<string>;
}

const BRACKETED = /^(\[[^\]]+\])(?::(\d+))?$/;
const NAME_AND_PORT = /^([^:]+)(?::(\d+))?$/;

/** The URL parser's spelling of a host, so `LOCALHOST`, `127.1` and `127.0.0.1` compare as they will in a URL. */
function normalizeHostname(hostname: string): string {
  return hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
}

/**
 * Parses `allowHosts` entries: `host` (any port) or `host:port` (that port only); IPv6 as `[::1]` or
 * `[::1]:9000` (a bare `::1` means any port). Throws on an entry that is not one of those, naming it.
 */
export function parseAllowHosts(entries: readonly string[]): AllowHosts {
  const anyPort = new Set<string>();
  const onPort = new Set<string>();
  for (const entry of entries) {
    const text = entry.trim();
    const match = BRACKETED.exec(text) ?? (text.split(':').length > 2 ? [text, `[${text}]`] : NAME_AND_PORT.exec(text));
    const invalid = new Error(`invalid allowHosts entry '${entry}': expected host or host:port (IPv6 as [addr] or [addr]:port)`);
    if (match === null || match[1] === undefined || /[/?#@\s\\]/.test(match[1])) throw invalid;
    let hostname: string;
    try {
      hostname = normalizeHostname(new URL(`http://${match[1]}/`).hostname);
    } catch {
      throw invalid;
    }
    const portText = match[2];
    if (portText === undefined) {
      anyPort.add(hostname);
      continue;
    }
    const port = Number(portText);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) throw invalid;
    onPort.add(`${hostname}:${port}`);
  }
  return { anyPort, onPort };
}

/** The port a request to `url` connects to. */
export function effectivePort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/** Whether the host and port `url` points at are exempt from the address check. */
export function isAllowedHost(allow: AllowHosts, url: URL): boolean {
  const hostname = normalizeHostname(url.hostname);
  return allow.anyPort.has(hostname) || allow.onPort.has(`${hostname}:${effectivePort(url)}`);
}
