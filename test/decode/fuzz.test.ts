/**
 * Over a million random and mutated frames through decode(): nothing throws,
 * every frame is classified, and nothing past off + len is read.
 *
 * Each frame is decoded three times: in an exactly sized Buffer view (a read
 * past the end gives undefined and the digest turns -1), and in the middle of
 * two large buffers whose bytes after the frame are 0x00 and 0xff (a read past
 * the end that matters changes the digest). A sample is decoded once more
 * through a Proxy that throws on any index outside [off, off + len).
 *
 * Seeded, so a failure can be replayed: MIRRORCAP_FUZZ_SEED=<n>.
 */
import t from 'tap';
import { Decoder, L3_NAMES, L4_NAMES, LAYER_NAMES, STATUS_NAMES } from '../../src/decode/packet.js';
import { FIXTURES } from '../fixtures/catalog.js';
import { Random } from '../lib/random.js';
import { digest, fingerprint } from './fingerprint.js';

const SEED = Number(process.env.MIRRORCAP_FUZZ_SEED ?? 20240601) >>> 0;
const RANDOM_FRAMES = 300_000;
const MUTATED_FRAMES = 700_000;
const AUDITED_EVERY = 50;
const MAX_LEN = 1600;
const AT = 4096;

const random = new Random(SEED);

/** EtherTypes worth hitting on purpose, so random frames reach past Ethernet. */
const TYPES = [0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x0806, 0x8035];
const PROTOS = [6, 17, 1, 58, 0, 43, 44, 60, 51, 50, 59, 135];

function randomFrame(dst: Buffer): number {
  const len = random.below(4) === 0 ? random.below(64) : random.below(MAX_LEN);
  random.fill(dst, AT, AT + len);
  // Half the time make it plausible: a known EtherType, the right IP version, a known protocol.
  if (random.below(2) === 0 && len >= 14) {
    const type = TYPES[random.below(TYPES.length)];
    dst.writeUInt16BE(type, AT + 12);
    if (len > 14) dst[AT + 14] = type === 0x86dd ? 0x60 | (random.next() & 15) : 0x40 | (5 + random.below(3));
    if (len > 23 && type === 0x0800) dst[AT + 23] = PROTOS[random.below(PROTOS.length)];
    if (len > 20 && type === 0x86dd) dst[AT + 20] = PROTOS[random.below(PROTOS.length)];
  }
  return len;
}

const frames = FIXTURES.flatMap((f) => f.frames.map((fr) => fr.frame));

/** A fixture frame with 1 to 4 flipped bits (mostly in the headers), sometimes cut short. */
function mutatedFrame(dst: Buffer): number {
  const src = frames[random.below(frames.length)];
  let len = src.length;
  src.copy(dst, AT);
  const flips = 1 + random.below(4);
  for (let i = 0; i < flips && len > 0; i++) {
    const at = random.below(3) === 0 ? random.below(len) : random.below(Math.min(len, 96));
    dst[AT + at] ^= 1 << random.below(8);
  }
  if (random.below(3) === 0) len = random.below(len + 1);
  return len;
}

interface Tally {
  frames: number;
  statuses: Set<number>;
  layers: Set<number>;
  l3: Set<number>;
  l4: Set<number>;
  failures: string[];
}

/** A Buffer stand-in that throws on any index outside [lo, hi). */
function audited(buf: Buffer, lo: number, hi: number): Buffer {
  return new Proxy(buf, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) {
        const i = Number(key);
        if (i < lo || i >= hi) throw new RangeError(`read at ${i}, frame is [${lo}, ${hi})`);
        return target[i];
      }
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
}

function check(d: Decoder, zeros: Buffer, ones: Buffer, len: number, n: number, tally: Tally): void {
  const bytes = zeros.subarray(AT, AT + len);
  const fail = (why: string): void => {
    if (tally.failures.length < 10) tally.failures.push(`${why}: ${bytes.toString('hex')}`);
  };
  try {
    const exact = Buffer.from(bytes.buffer, bytes.byteOffset, len);
    const st = d.decode(exact, 0, len);
    const h = digest(d);
    tally.frames++;
    tally.statuses.add(st);
    tally.l3.add(d.l3);
    tally.l4.add(d.l4);
    if (st !== 0) tally.layers.add(d.errorLayer);
    if (st !== d.status || STATUS_NAMES[st] === undefined || L3_NAMES[d.l3] === undefined || L4_NAMES[d.l4] === undefined) {
      return fail(`unclassified (status ${st}, l3 ${d.l3}, l4 ${d.l4})`);
    }
    if ((st !== 0) !== (LAYER_NAMES[d.errorLayer] !== 'none')) return fail('status and error layer disagree');
    if (h === -1) return fail(`read past the end of an exact Buffer: ${fingerprint(d)}`);
    if (d.payloadLen < 0 || d.payloadOff + d.payloadLen > len || d.l4Len < 0 || d.l4Off + d.l4Len > len) {
      return fail('payload or L4 bounds outside the frame');
    }
    ones.set(bytes, AT);
    d.decode(zeros, AT, len);
    const h0 = digest(d);
    d.decode(ones, AT, len);
    const h1 = digest(d);
    ones.fill(0xff, AT, AT + len);
    if (h0 !== h || h1 !== h) return fail('the answer depends on bytes past the end');
    if (n % AUDITED_EVERY === 0) {
      d.decode(audited(zeros, AT, AT + len), AT, len);
      if (digest(d) !== h) return fail('the audited decode differs');
    }
  } catch (e) {
    fail(`threw ${(e as Error).message}`);
  }
}

t.test(`fuzz: ${RANDOM_FRAMES + MUTATED_FRAMES} random and mutated frames plus every fixture at every length (seed ${SEED})`, async (t) => {
  const d = new Decoder();
  const zeros = Buffer.alloc(AT + 70000);
  const ones = Buffer.alloc(AT + 70000, 0xff);
  const tally: Tally = { frames: 0, statuses: new Set(), layers: new Set(), l3: new Set(), l4: new Set(), failures: [] };
  const started = process.hrtime.bigint();
  let n = 0;
  const run = (len: number): void => {
    check(d, zeros, ones, len, n++, tally);
    zeros.fill(0, AT, AT + len);
  };
  for (let i = 0; i < RANDOM_FRAMES; i++) run(randomFrame(zeros));
  for (let i = 0; i < MUTATED_FRAMES; i++) run(mutatedFrame(zeros));
  for (const f of frames) {
    for (let len = 0; len <= f.length; len++) {
      f.copy(zeros, AT, 0, len);
      run(len);
    }
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.same(tally.failures, [], 'no exception, no unclassified frame, no read past the end');
  t.ok(tally.frames >= 1_000_000, `${tally.frames} frames in ${ms.toFixed(0)} ms`);
  // The fuzz reached every outcome: each status, each error layer, each class.
  t.same([...tally.statuses].sort(), STATUS_NAMES.map((_, i) => i), 'every status seen');
  t.same(
    [...tally.layers].sort((a, b) => a - b),
    LAYER_NAMES.map((_, i) => i).slice(1),
    'every layer failed at least once',
  );
  t.equal(tally.l3.size, L3_NAMES.length, 'every L3 class seen');
  t.equal(tally.l4.size, L4_NAMES.length, 'every L4 class seen');
});
