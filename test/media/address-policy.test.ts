import { describe, expect, it } from 'vitest';
import {
  blockedAddressClass,
  describeBlockedAddress,
  effectivePort,
  isAllowedHost,
  isBlockedAddress,
  parseAllowHosts,
} from '../../src/media/address-policy.ts';

/** [address, words expected in its class]. Classified only; nothing here is ever contacted. */
const BLOCKED: ReadonlyArray<readonly [string, string]> = [
  // IPv4
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['10.0.0.5', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['192.168.1.1', 'private'],
  ['169.254.169.254', 'link-local'],
  ['100.64.0.1', 'carrier-grade NAT'],
  ['100.127.255.255', 'carrier-grade NAT'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['240.0.0.1', 'reserved'],
  ['192.0.0.8', 'reserved'],
  ['192.0.2.1', 'reserved'], // TEST-NET-1 (documentation)
  ['198.51.100.7', 'reserved'], // TEST-NET-2
  ['203.0.113.9', 'reserved'], // TEST-NET-3
  ['198.18.0.1', 'reserved'], // benchmarking
  ['198.19.255.255', 'reserved'],
  // numeric spellings of 127.0.0.1 (URL parsing normalises these first; the policy copes anyway)
  ['2130706433', 'loopback'],
  ['0x7f.1', 'loopback'],
  ['0177.0.0.1', 'loopback'],
  ['127.1', 'loopback'],
  // IPv6
  ['::1', 'loopback'],
  ['[::1]', 'loopback'],
  ['::', 'unspecified'],
  ['fe80::1', 'link-local'],
  ['fe80::1%eth0', 'link-local'],
  ['fc00::1', 'unique-local'],
  ['fd12:3456:789a::1', 'unique-local'],
  ['ff02::1', 'multicast'],
  ['ff05::1:3', 'multicast'],
  ['fec0::1', 'site-local'],
  ['100::1', 'discard'],
  ['2001:db8::1', 'reserved'], // documentation
  ['3fff::1', 'reserved'], // documentation (RFC 9637)
  ['2001:2::1', 'benchmarking'],
  // IPv4-mapped: the embedded address decides
  ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
  ['::ffff:7f00:1', 'IPv4-mapped loopback'],
  ['::ffff:10.0.0.5', 'IPv4-mapped private'],
  ['::ffff:169.254.169.254', 'IPv4-mapped link-local'],
  ['::ffff:100.64.0.1', 'IPv4-mapped carrier-grade NAT'],
  ['::ffff:0.0.0.0', 'IPv4-mapped unspecified'],
  // IPv4-compatible (deprecated) and other space outside 2000::/3
  ['::7f00:1', 'non-global'],
  ['::a00:5', 'non-global'],
  ['4000::1', 'non-global'],
  // NAT64 (RFC 6052 well-known prefix embeds the real destination; the local-use prefix is never fetched)
  ['64:ff9b::10.0.0.5', 'NAT64 private'],
  ['64:ff9b::7f00:1', 'NAT64 loopback'],
  ['64:ff9b::a9fe:a9fe', 'NAT64 link-local'],
  ['64:ff9b:1::a00:5', 'NAT64'],
  // 6to4 (2002:V4ADDR::/48) and Teredo (2001::/32) tunnel through an IPv4 address: refused outright
  ['2002:a00:5::1', '6to4'],
  ['2002:7f00:1::1', '6to4'],
  ['2001:0:4136:e378:8000:63bf:f5ff:fffe', 'Teredo'], // client 10.0.0.1, obfuscated
  ['2001:0:a00:1::1', 'Teredo'],
  ['ff02::1:ff00:1', 'multicast'],
  // not an address at all
  ['localhost', 'invalid'],
  ['', 'invalid'],
];

const ALLOWED = [
  '8.8.8.8',
  '1.1.1.1',
  '93.184.216.34',
  '100.63.255.255', // just below CGNAT
  '100.128.0.0', // just above CGNAT
  '172.15.255.255', // just below 172.16/12
  '172.32.0.0', // just above 172.16/12
  '11.0.0.1',
  '2606:4700::1111',
  '2001:4860:4860::8888',
  '2a00:1450:4001:80b::200e',
  '::ffff:8.8.8.8',
  '64:ff9b::8.8.8.8', // NAT64 to a public address, as DNS64 networks return
];

describe('isBlockedAddress', () => {
  it.each(BLOCKED)('blocks %s (%s)', (address, words) => {
    expect(isBlockedAddress(address)).toBe(true);
    expect(blockedAddressClass(address)).toContain(words);
  });

  it.each(ALLOWED)('allows public unicast %s', (address) => {
    expect(isBlockedAddress(address)).toBe(false);
    expect(blockedAddressClass(address)).toBeUndefined();
  });

  it('describes a blocked address with its class for error messages', () => {
    expect(describeBlockedAddress('10.0.0.5')).toBe('a private address 10.0.0.5');
    expect(describeBlockedAddress('::ffff:7f00:1')).toBe('an IPv4-mapped loopback address ::ffff:7f00:1');
    expect(describeBlockedAddress('fd00::1')).toBe('a unique-local address fd00::1');
    expect(describeBlockedAddress('0.0.0.0')).toBe('an unspecified address 0.0.0.0');
    expect(describeBlockedAddress('8.8.8.8')).toBeUndefined();
  });
});

describe('parseAllowHosts', () => {
  const url = (text: string): URL => new URL(text);

  it('exempts a bare host on any port and host:port on that port only', () => {
    const allow = parseAllowHosts(['minio', 'storage.internal:9000', '127.0.0.1:8080']);
    expect(isAllowedHost(allow, url('http://minio/'))).toBe(true);
    expect(isAllowedHost(allow, url('https://minio:9443/x'))).toBe(true);
    expect(isAllowedHost(allow, url('http://storage.internal:9000/a'))).toBe(true);
    expect(isAllowedHost(allow, url('http://storage.internal:9001/a'))).toBe(false);
    expect(isAllowedHost(allow, url('http://storage.internal/a'))).toBe(false);
    expect(isAllowedHost(allow, url('http://127.0.0.1:8080/'))).toBe(true);
    expect(isAllowedHost(allow, url('http://127.0.0.1:8081/'))).toBe(false);
    expect(isAllowedHost(allow, url('http://other/'))).toBe(false);
    expect(isAllowedHost(allow, url('http://minio.evil.example/'))).toBe(false);
  });

  it('compares hosts as the URL parser spells them', () => {
    const allow = parseAllowHosts(['MinIO.', '127.1:80', '[::1]:9000', '::2', '[fd00::1]']);
    expect(isAllowedHost(allow, url('http://minio:1234/'))).toBe(true);
    expect(isAllowedHost(allow, url('http://minio.:1234/'))).toBe(true);
    // 127.1 is 127.0.0.1; port 80 is the http default, so it must not be read as "any port"
    expect(isAllowedHost(allow, url('http://127.0.0.1/'))).toBe(true);
    expect(isAllowedHost(allow, url('http://2130706433:80/'))).toBe(true);
    expect(isAllowedHost(allow, url('http://127.0.0.1:81/'))).toBe(false);
    expect(isAllowedHost(allow, url('https://127.0.0.1/'))).toBe(false);
    expect(isAllowedHost(allow, url('http://[::1]:9000/'))).toBe(true);
    expect(isAllowedHost(allow, url('http://[::1]:9001/'))).toBe(false);
    expect(isAllowedHost(allow, url('http://[::2]:7/'))).toBe(true);
    expect(isAllowedHost(allow, url('http://[fd00:0::1]/'))).toBe(true);
  });

  it.each(['', 'http://minio', 'minio/path', 'user@minio', 'minio:0', 'minio:65536', 'minio:port', 'a b', '[::1', '[::1]:x'])(
    'rejects the entry %j',
    (entry) => {
      expect(() => parseAllowHosts([entry])).toThrow(/invalid allowHosts entry/);
    },
  );

  it('knows the default ports', () => {
    expect(effectivePort(url('http://a/'))).toBe(80);
    expect(effectivePort(url('https://a/'))).toBe(443);
    expect(effectivePort(url('https://a:8443/'))).toBe(8443);
  });
});
