/**
 * Every fixture frame decodes to what the catalog says; the committed pcaps
 * are exactly what make-pcaps.ts writes; every frame cut at every length
 * decodes without throwing, to a known status, reading nothing past the cut.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { Decoder, L3_NAMES, L4_NAMES, LAYER_NAMES, LIMIT_NAMES, STATUS_NAMES } from '../../src/decode/packet.js';
import { L3_IPV4, L3_IPV6, OK } from '../../src/decode/status.js';
import { FIXTURES } from '../fixtures/catalog.js';
import { PCAP_DIR, renderPcap, renderReadme } from '../fixtures/make-pcaps.js';
import { digest, fingerprint } from './fingerprint.js';

/** The decoder's verdict in the catalog's `want` notation. */
function verdict(d: Decoder): string {
  let s = `${L3_NAMES[d.l3]} ${L4_NAMES[d.l4]}`;
  if (d.truncated) s += ' trunc';
  if (d.status !== OK) s += ` ! ${LAYER_NAMES[d.errorLayer]} ${STATUS_NAMES[d.status]} ${LIMIT_NAMES[d.errorLimit]}`;
  return s;
}

t.test('every fixture frame decodes as the catalog says', async (t) => {
  const d = new Decoder();
  for (const f of FIXTURES) {
    for (const fr of f.frames) {
      d.decode(fr.frame, 0, fr.frame.length);
      t.equal(verdict(d), fr.want, `${f.file}: ${fr.name}`);
    }
  }
});

t.test('the committed pcaps are current (npm run fixtures regenerates them)', async (t) => {
  FIXTURES.forEach((f, i) => {
    t.ok(readFileSync(PCAP_DIR + f.file).equals(renderPcap(f, i)), f.file);
  });
  t.equal(readFileSync(PCAP_DIR + 'README.md', 'utf8'), renderReadme(), 'README.md');
});

t.test('frame names are unique', async (t) => {
  const names = FIXTURES.flatMap((f) => f.frames.map((fr) => fr.name));
  t.equal(new Set(names).size, names.length);
});

t.test('every fixture frame cut at every length: classified, no throw, no read past the cut', async (t) => {
  const d = new Decoder();
  const big = Buffer.alloc(70000);
  let cuts = 0;
  let bad = 0;
  const fail = (msg: string): void => {
    if (++bad <= 5) t.fail(msg);
  };
  for (const f of FIXTURES) {
    for (const fr of f.frames) {
      d.decode(fr.frame, 0, fr.frame.length);
      const claim = d.ipv4.lengthInferred || d.ipv6.lengthInferred ? 0 : d.claimedFrameLength;
      for (let len = 0; len <= fr.frame.length; len++) {
        cuts++;
        const exact = Buffer.from(fr.frame.subarray(0, len));
        const st = d.decode(exact, 0, len);
        const fp = fingerprint(d);
        if (st !== d.status || STATUS_NAMES[st] === undefined || L3_NAMES[d.l3] === undefined || L4_NAMES[d.l4] === undefined) {
          fail(`${fr.name} cut at ${len}: unclassified ${verdict(d)}`);
        }
        if (digest(d) === -1 || d.payloadLen < 0 || d.payloadOff + d.payloadLen > len) {
          fail(`${fr.name} cut at ${len}: out of bounds ${fp}`);
        }
        // The same bytes in the middle of a buffer, followed by 0x00 and then 0xff: same answer.
        for (const fill of [0x00, 0xff]) {
          big.fill(fill);
          exact.copy(big, 1000);
          d.decode(big, 1000, len);
          if (fingerprint(d) !== fp) fail(`${fr.name} cut at ${len}: depends on bytes past the end`);
        }
        // Cutting keeps the true length: the IP header's claim survives, and only a cut before it is truncation.
        d.decode(exact, 0, len);
        if (claim > 0 && (d.l3 === L3_IPV4 || d.l3 === L3_IPV6) && !(d.claimedFrameLength === claim && d.truncated === len < claim)) {
          fail(`${fr.name} cut at ${len}: claimed ${d.claimedFrameLength}, whole frame ${claim}`);
        }
      }
    }
  }
  t.equal(bad, 0, `${cuts} cuts`);
});
