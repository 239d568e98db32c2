/**
 * The decoder against tshark on the project's own fixtures: no difference,
 * and exactly the expected tshark quirks (see QUIRKS in tshark-compare.ts).
 */
import t from 'tap';
import { FIXTURES } from '../fixtures/catalog.js';
import { PCAP_DIR } from '../fixtures/make-pcaps.js';
import { compareCapture } from './tshark-compare.js';

/** file -> the quirk ids we expect tshark to show there, one per excused difference. */
const EXPECTED_QUIRKS: Record<string, string[]> = {
  'ethernet-vlan.pcap': ['vlan-tag-limit'],
  'malformed.pcap': ['ipv6-ext-header-limit'],
};

t.test('fixtures: every frame and field as tshark sees it', async (t) => {
  for (const f of FIXTURES) {
    const r = await compareCapture(PCAP_DIR + f.file, f.file);
    t.equal(r.frames, f.frames.length, `${f.file}: every frame compared`);
    t.ok(r.fieldsCompared >= 5 * r.frames, `${f.file}: ${r.fieldsCompared} fields compared`);
    t.same(r.diffs, [], `${f.file}: no differences`);
    t.same(
      r.excused.map((e) => e.quirk),
      EXPECTED_QUIRKS[f.file] ?? [],
      `${f.file}: expected tshark quirks only`,
    );
    if (f.file === 'vxlan-outer.pcap') t.equal(r.innerFrames, f.frames.length, 'every inner VXLAN frame compared');
  }
});
