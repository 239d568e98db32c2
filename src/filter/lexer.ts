/**
 * The pcap-filter tokenizer: libpcap 1.10's scanner.l, rule for rule.
 *
 * flex picks, at each position, the longest text any rule matches, and among equally long
 * matches the rule written first. The rules, in scanner.l's order:
 *
 *   keywords (case-sensitive)      host, tcp, and, &&, ... (a keyword beats an equally long ID)
 *   whitespace [ \r\n\t], the one-character operators, >= <= != == << >>
 *   ${B}                           ARCnet address            (refused: not Ethernet)
 *   MAC                            aa:bb:cc:dd:ee:ff, aa-bb-.., aa.bb.., aabb.ccdd.eeff, aabbccddeeff
 *   N                              decimal, 0x hex, leading-0 octal (32 bits at most)
 *   HID                            N.N, N.N.N, N.N.N.N      (so "10.1" is a network, see parser)
 *   V6                             IPv6 addresses, checked like inet_pton
 *   {B}:+({B}:+)+                  a bogus Ethernet address: an error
 *   named constants                icmptype, tcp-syn, icmp6-echo, ... become numbers
 *   ID                             [A-Za-z0-9]([-_.A-Za-z0-9]*[.A-Za-z0-9])?
 *   \word                          an ID that would otherwise be a keyword ("ip proto \tcp")
 *   anything else                  an error
 *
 * Surprises this reproduces: a 12-digit decimal number is an Ethernet address (MAC's
 * B2{3} is written before N), "1.2.3.4.5" and "10-20" are IDs, "0000.1111.2222" is an
 * Ethernet address, "08" is an error (octal), "host1" is an ID but "host(" is a keyword.
 *
 * Errors found here (an overflowing number, a bogus address) become an 'error' token, so the
 * parser reports them only if it gets that far: a word earlier in the text that it refuses
 * is reported first, as a reader of the expression would expect.
 */
import { isIPv6 } from 'node:net';

/** Keywords with a meaning in mirrorcap; `ether` and `link` are one token, as in libpcap. */
const KEYWORDS: Record<string, TokenKind> = {
  dst: 'dst',
  src: 'src',
  link: 'ether',
  ether: 'ether',
  arp: 'arp',
  rarp: 'rarp',
  ip: 'ip',
  sctp: 'sctp',
  tcp: 'tcp',
  udp: 'udp',
  icmp: 'icmp',
  igmp: 'igmp',
  igrp: 'igrp',
  pim: 'pim',
  vrrp: 'vrrp',
  carp: 'carp',
  ip6: 'ip6',
  icmp6: 'icmp6',
  ah: 'ah',
  esp: 'esp',
  host: 'host',
  net: 'net',
  mask: 'mask',
  port: 'port',
  portrange: 'portrange',
  proto: 'proto',
  less: 'less',
  greater: 'greater',
  broadcast: 'broadcast',
  multicast: 'multicast',
  and: 'and',
  '&&': 'and',
  or: 'or',
  '||': 'or',
  not: '!',
  len: 'len',
  length: 'len',
  vlan: 'vlan',
};

/**
 * Keywords of libpcap's language that mirrorcap refuses, with why. They are keywords there,
 * so they can never be read as a name; refusing them changes no answer, it only says so.
 */
const UNSUPPORTED: Record<string, string> = {};
const refuse = (why: string, words: string): void => {
  for (const w of words.split(' ')) UNSUPPORTED[w] = why;
};
refuse('names another link layer (mirrorcap filters Ethernet frames; use ether)', 'ppp slip fddi tr wlan radio');
refuse(
  'is a non-IP protocol mirrorcap does not filter on (ether proto N still works)',
  'atalk aarp decnet lat sca moprc mopdl iso esis es-is isis is-is l1 l2 iih lsp snp csnp psnp clnp stp ipx netbeui llc',
);
refuse('looks through MPLS, PPPoE or GENEVE, which mirrorcap does not filter through', 'mpls pppoed pppoes geneve');
refuse('needs name resolution or loops (protochain)', 'gateway protochain');
refuse('is libpcap\'s "byte" primitive; write ether[N] instead', 'byte');
refuse('is about the capturing interface, which mirrored traffic does not have', 'inbound outbound ifindex on ifname');
refuse('is an 802.11 qualifier', 'type subtype direction dir address1 address2 address3 address4 addr1 addr2 addr3 addr4 ra ta');
refuse('is an ATM qualifier', 'lane metac bcc oam oamf4 oamf4ec oamf4sc sc ilmic vpi vci connectmsg metaconnect');
refuse('is a pflog qualifier', 'rset ruleset rnr rulenum srnr subrulenum reason action');
refuse('is an SS7 qualifier', 'fisu lssu lsu msu hfisu hlssu hmsu sio opc dpc sls hsio hopc hdpc hsls');

/** scanner.l's named constants: words that are numbers. */
const CONSTANTS: Record<string, number> = {
  icmptype: 0,
  icmpcode: 1,
  'icmp-echoreply': 0,
  'icmp-unreach': 3,
  'icmp-sourcequench': 4,
  'icmp-redirect': 5,
  'icmp-echo': 8,
  'icmp-routeradvert': 9,
  'icmp-routersolicit': 10,
  'icmp-timxceed': 11,
  'icmp-paramprob': 12,
  'icmp-tstamp': 13,
  'icmp-tstampreply': 14,
  'icmp-ireq': 15,
  'icmp-ireqreply': 16,
  'icmp-maskreq': 17,
  'icmp-maskreply': 18,
  icmp6type: 0,
  icmp6code: 1,
  'icmp6-destinationunreach': 1,
  'icmp6-packettoobig': 2,
  'icmp6-timeexceeded': 3,
  'icmp6-parameterproblem': 4,
  'icmp6-echo': 128,
  'icmp6-echoreply': 129,
  'icmp6-multicastlistenerquery': 130,
  'icmp6-multicastlistenerreportv1': 131,
  'icmp6-multicastlistenerdone': 132,
  'icmp6-routersolicit': 133,
  'icmp6-routeradvert': 134,
  'icmp6-neighborsolicit': 135,
  'icmp6-neighboradvert': 136,
  'icmp6-redirect': 137,
  'icmp6-routerrenum': 138,
  'icmp6-nodeinformationquery': 139,
  'icmp6-nodeinformationresponse': 140,
  'icmp6-ineighbordiscoverysolicit': 141,
  'icmp6-ineighbordiscoveryadvert': 142,
  'icmp6-multicastlistenerreportv2': 143,
  'icmp6-homeagentdiscoveryrequest': 144,
  'icmp6-homeagentdiscoveryreply': 145,
  'icmp6-mobileprefixsolicit': 146,
  'icmp6-mobileprefixadvert': 147,
  'icmp6-certpathsolicit': 148,
  'icmp6-certpathadvert': 149,
  'icmp6-multicastrouteradvert': 151,
  'icmp6-multicastroutersolicit': 152,
  'icmp6-multicastrouterterm': 153,
  tcpflags: 13,
  'tcp-fin': 0x01,
  'tcp-syn': 0x02,
  'tcp-rst': 0x04,
  'tcp-push': 0x08,
  'tcp-ack': 0x10,
  'tcp-urg': 0x20,
  'tcp-ece': 0x40,
  'tcp-cwr': 0x80,
};

export type TokenKind =
  | 'dst'
  | 'src'
  | 'ether'
  | 'arp'
  | 'rarp'
  | 'ip'
  | 'sctp'
  | 'tcp'
  | 'udp'
  | 'icmp'
  | 'igmp'
  | 'igrp'
  | 'pim'
  | 'vrrp'
  | 'carp'
  | 'ip6'
  | 'icmp6'
  | 'ah'
  | 'esp'
  | 'host'
  | 'net'
  | 'mask'
  | 'port'
  | 'portrange'
  | 'proto'
  | 'less'
  | 'greater'
  | 'broadcast'
  | 'multicast'
  | 'and'
  | 'or'
  | '!'
  | 'len'
  | 'vlan'
  | '('
  | ')'
  | '['
  | ']'
  | ':'
  | '+'
  | '-'
  | '*'
  | '/'
  | '%'
  | '&'
  | '|'
  | '^'
  | '='
  | '<'
  | '>'
  | '>='
  | '<='
  | '!='
  | '<<'
  | '>>'
  /** A number (N or a named constant): `num` holds its value. */
  | 'num'
  /** A name: text is the name (without the backslash of \word). */
  | 'id'
  /** N.N, N.N.N or N.N.N.N, as written. */
  | 'hid'
  /** An IPv6 address, as written. */
  | 'hid6'
  /** An Ethernet address, as written. */
  | 'eid'
  /** A keyword mirrorcap refuses; `detail` says why. */
  | 'unsupported'
  /** Text the scanner refuses (or an ARCnet address); `detail` says why. */
  | 'error'
  | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** The text as written, backslash and all. */
  readonly raw: string;
  /** The text meant: for a \word, the word without its backslash. */
  readonly text: string;
  /** 0-based offset of the token in the expression. */
  readonly pos: number;
  /** The value of a 'num' token. */
  readonly num: number;
  /** For 'unsupported' and 'error': what is wrong. */
  readonly detail: string;
}

const B = '[0-9A-Fa-f][0-9A-Fa-f]?';
const B2 = '[0-9A-Fa-f]{4}';
const W = '[0-9A-Fa-f]{1,4}';
const N = '(?:0[xX][0-9A-Fa-f]+|[0-9]+)';
const V4 = `${N}\\.${N}\\.${N}\\.${N}`;

/** IPv6 alternatives exactly as scanner.l lists them (V680 ... V6004): k groups, "::" after group i. */
function v6Alternatives(): string[] {
  const out = [Array(8).fill(W).join(':')];
  const withGap = (groups: number, tail: string): void => {
    for (let gap = 0; gap <= groups; gap++) {
      const before = Array(gap).fill(W).join(':');
      const after = [...Array(groups - gap).fill(W), ...(tail ? [tail] : [])].join(':');
      out.push(`${before}::${after}`);
    }
  };
  for (let groups = 7; groups >= 0; groups--) withGap(groups, '');
  out.push(`${Array(6).fill(W).join(':')}:${V4}`);
  for (let groups = 5; groups >= 0; groups--) withGap(groups, V4);
  return out;
}

/** Each rule as a list of alternatives; flex's longest match is the longest over all of them. */
const sticky = (alternatives: string[]): RegExp[] => alternatives.map((a) => new RegExp(a, 'y'));
const RE_AID = sticky([`\\$${B}`]);
const RE_MAC = sticky([
  `${B}:${B}:${B}:${B}:${B}:${B}`,
  `${B}-${B}-${B}-${B}-${B}-${B}`,
  `${B}\\.${B}\\.${B}\\.${B}\\.${B}\\.${B}`,
  `${B2}\\.${B2}\\.${B2}`,
  `${B2}${B2}${B2}`,
]);
const RE_N = sticky(['0[xX][0-9A-Fa-f]+', '[0-9]+']);
const RE_HID = sticky([`${N}\\.${N}`, `${N}\\.${N}\\.${N}`, V4]);
const RE_V6 = sticky(v6Alternatives());
const RE_BOGUS_MAC = sticky([`${B}:+(?:${B}:+)+`]);
const RE_ID = sticky(['[A-Za-z0-9](?:[-_.A-Za-z0-9]*[.A-Za-z0-9])?']);
const RE_ESCAPED = sticky(['\\\\[^ !()\\n\\t]+']);
const WORDS = Object.keys(KEYWORDS)
  .concat(Object.keys(UNSUPPORTED))
  .sort((a, b) => b.length - a.length);
const CONSTANT_WORDS = Object.keys(CONSTANTS).sort((a, b) => b.length - a.length);
const OPERATORS2 = ['>=', '<=', '!=', '==', '<<', '>>'];
const OPERATORS1 = '+-*/%:[]!<>()&|^=';

function longest(res: RegExp[], text: string, pos: number): number {
  let best = 0;
  for (const re of res) {
    re.lastIndex = pos;
    if (re.test(text) && re.lastIndex - pos > best) best = re.lastIndex - pos;
  }
  return best;
}

const HEX = /[0-9A-Fa-f]/;
const ALNUM = /[0-9A-Za-z]/;

function longestWord(words: string[], text: string, pos: number): number {
  for (const w of words) if (text.startsWith(w, pos)) return w.length;
  return 0;
}

/** scanner.l's stou(): decimal, 0x hex or leading-0 octal, refused past 32 bits. */
function parseNumber(text: string): number | string {
  let n = 0;
  if (text.length > 1 && text[0] === '0' && (text[1] === 'x' || text[1] === 'X')) {
    for (const c of text.slice(2)) {
      if (n > 0xfffffff) return `number ${text} overflows 32 bits`;
      n = n * 16 + parseInt(c, 16);
    }
  } else if (text[0] === '0') {
    for (const c of text.slice(1)) {
      if (c > '7') return `number ${text} contains non-octal digit`;
      if (n > 0o3777777777) return `number ${text} overflows 32 bits`;
      n = n * 8 + Number(c);
    }
  } else {
    for (const c of text) {
      const d = Number(c);
      if (n > 429496729 || (n === 429496729 && d > 5)) return `number ${text} overflows 32 bits`;
      n = n * 10 + d;
    }
  }
  return n;
}

export function tokenize(text: string): Token[] {
  const out: Token[] = [];
  const push = (kind: TokenKind, pos: number, len: number, extra: { num?: number; detail?: string; text?: string } = {}): void => {
    const raw = text.slice(pos, pos + len);
    out.push({ kind, pos, raw, text: extra.text ?? raw, num: extra.num ?? 0, detail: extra.detail ?? '' });
  };
  let pos = 0;
  while (pos < text.length) {
    const c = text[pos]!;
    if (c === ' ' || c === '\r' || c === '\n' || c === '\t') {
      pos++;
      continue;
    }
    // Rule order matters only between equally long matches; earlier rules come first here,
    // and a later rule wins only with a strictly longer match.
    // Rules that cannot match at this character are not tried (the result is the same).
    const hex = HEX.test(c);
    const alnum = ALNUM.test(c);
    const rules: [string, number][] = [
      ['word', alnum || c === '&' || c === '|' ? longestWord(WORDS, text, pos) : 0],
      ['op', OPERATORS2.includes(text.slice(pos, pos + 2)) ? 2 : OPERATORS1.includes(c) ? 1 : 0],
      ['aid', c === '$' ? longest(RE_AID, text, pos) : 0],
      ['mac', hex ? longest(RE_MAC, text, pos) : 0],
      ['n', hex ? longest(RE_N, text, pos) : 0],
      ['hid', hex ? longest(RE_HID, text, pos) : 0],
      ['v6', (hex || c === ':') && /^[0-9A-Fa-f.xX]*:/.test(text.slice(pos, pos + 48)) ? longest(RE_V6, text, pos) : 0],
      ['bogus', hex ? longest(RE_BOGUS_MAC, text, pos) : 0],
      ['constant', c === 'i' || c === 't' ? longestWord(CONSTANT_WORDS, text, pos) : 0],
      ['id', alnum ? longest(RE_ID, text, pos) : 0],
      ['escaped', c === '\\' ? longest(RE_ESCAPED, text, pos) : 0],
    ];
    let rule = 'char';
    let len = 1;
    let best = 0;
    for (const [name, n] of rules) {
      if (n > best) {
        best = n;
        rule = name;
        len = n;
      }
    }
    const word = text.slice(pos, pos + len);
    switch (rule) {
      case 'word':
        if (KEYWORDS[word] !== undefined) push(KEYWORDS[word]!, pos, len);
        else push('unsupported', pos, len, { detail: `'${word}' ${UNSUPPORTED[word]!}` });
        break;
      case 'op':
        push(word === '==' ? '=' : (word as TokenKind), pos, len);
        break;
      case 'aid':
        push('error', pos, len, { detail: 'ARCnet addresses are not supported (mirrorcap filters Ethernet frames)' });
        break;
      case 'mac':
        push('eid', pos, len);
        break;
      case 'n': {
        const n = parseNumber(word);
        if (typeof n === 'number') push('num', pos, len, { num: n });
        else push('error', pos, len, { detail: n });
        break;
      }
      case 'hid':
        push('hid', pos, len);
        break;
      case 'v6':
        // What getaddrinfo(AI_NUMERICHOST) accepts of the V6 rule's matches (the IPv4 tail must be valid).
        if (isIPv6(word)) push('hid6', pos, len);
        else push('error', pos, len, { detail: `bogus IPv6 address ${word}` });
        break;
      case 'bogus':
        push('error', pos, len, { detail: `bogus ethernet address ${word}` });
        break;
      case 'constant':
        push('num', pos, len, { num: CONSTANTS[word]! });
        break;
      case 'id':
        push('id', pos, len);
        break;
      case 'escaped':
        push('id', pos, len, { text: word.slice(1) });
        break;
      default:
        push('error', pos, 1, { detail: `unexpected character '${c}'` });
    }
    pos += len;
  }
  out.push({ kind: 'eof', pos: text.length, raw: '', text: '', num: 0, detail: '' });
  return out;
}
