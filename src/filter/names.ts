/**
 * The names a filter may use instead of numbers. libpcap asks the system (/etc/services via
 * getaddrinfo, /etc/protocols via getprotobyname, DNS for hosts); mirrorcap has fixed tables
 * instead, so a filter means the same on every machine. The entries are Debian's netbase
 * (the files tcpdump reads on the machine the differential test runs on): a service listed
 * only for TCP makes `port NAME` a TCP-only primitive there too, and a test checks every
 * entry against tcpdump's compiled program. Any other name is refused, never looked up.
 */

/** Service name -> its TCP and UDP port (null where /etc/services has no such entry). */
export const SERVICES: ReadonlyMap<string, { readonly tcp: number | null; readonly udp: number | null }> = new Map(
  (
    [
      ['ftp-data', 20, null],
      ['ftp', 21, null],
      ['ssh', 22, null],
      ['telnet', 23, null],
      ['smtp', 25, null],
      ['domain', 53, 53],
      ['bootps', null, 67],
      ['bootpc', null, 68],
      ['tftp', null, 69],
      ['http', 80, null],
      ['www', 80, null],
      ['kerberos', 88, 88],
      ['pop3', 110, null],
      ['sunrpc', 111, 111],
      ['ntp', null, 123],
      ['netbios-ns', null, 137],
      ['netbios-dgm', null, 138],
      ['netbios-ssn', 139, null],
      ['imap2', 143, null],
      ['imap', 143, null],
      ['snmp', 161, 161],
      ['snmp-trap', 162, 162],
      ['bgp', 179, null],
      ['ldap', 389, 389],
      ['https', 443, 443],
      ['microsoft-ds', 445, null],
      ['isakmp', null, 500],
      // "syslog" is 514/udp and an alias of "shell", 514/tcp: both, as getaddrinfo finds.
      ['syslog', 514, 514],
      ['submission', 587, null],
      ['ldaps', 636, 636],
      ['imaps', 993, null],
      ['pop3s', 995, null],
      ['openvpn', 1194, 1194],
      ['ms-sql-s', 1433, null],
      ['radius', 1812, 1812],
      ['nfs', 2049, 2049],
      ['mysql', 3306, null],
      ['ms-wbt-server', 3389, null],
      ['ipsec-nat-t', null, 4500],
      ['sip', 5060, 5060],
      ['mdns', null, 5353],
      ['postgresql', 5432, null],
      ['http-alt', 8080, null],
    ] as const
  ).map(([name, tcp, udp]) => [name, { tcp, udp }]),
);

/** IP protocol names (for `proto NAME`, `ip proto NAME`, `ip6 proto NAME`), as /etc/protocols spells them. */
export const IP_PROTOCOLS: ReadonlyMap<string, number> = new Map([
  ['ip', 0],
  ['icmp', 1],
  ['igmp', 2],
  ['tcp', 6],
  ['udp', 17],
  ['ipv6', 41],
  ['ipv6-route', 43],
  ['ipv6-frag', 44],
  ['gre', 47],
  ['esp', 50],
  ['ah', 51],
  ['ipv6-icmp', 58],
  ['ipv6-nonxt', 59],
  ['ipv6-opts', 60],
  ['ospf', 89],
  ['pim', 103],
  ['vrrp', 112],
  ['l2tp', 115],
  ['sctp', 132],
]);

/**
 * `ether proto NAME`: libpcap's own tables (eproto_db and llc_db in nametoaddr.c), the same
 * everywhere. Values up to 1500 are 802.2 LLC SAPs.
 */
export const ETHER_PROTOCOLS: ReadonlyMap<string, number> = new Map([
  ['aarp', 0x80f3],
  ['arp', 0x0806],
  ['atalk', 0x809b],
  ['decnet', 0x6003],
  ['ip', 0x0800],
  ['ip6', 0x86dd],
  ['lat', 0x6004],
  ['loopback', 0x9000],
  ['mopdl', 0x6001],
  ['moprc', 0x6002],
  ['rarp', 0x8035],
  ['sca', 0x6007],
  ['iso', 0xfe],
  ['stp', 0x42],
  ['ipx', 0xe0],
  ['netbeui', 0xf0],
]);
