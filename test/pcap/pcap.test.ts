import t from 'tap';
import { dataViewOf, writeFileHeader, writeRecord, writeRecordViews, FILE_HEADER_LEN, RECORD_HEADER_LEN } from '../../src/pcap/pcap.js';

t.test('file header: nanosecond magic, version 2.4, snaplen, LINKTYPE_ETHERNET', async (t) => {
  const b = Buffer.alloc(32, 0xa5);
  t.equal(writeFileHeader(b, 4, 65535), 4 + FILE_HEADER_LEN);
  t.same(
    [...b],
    [
      0xa5, 0xa5, 0xa5, 0xa5,
      0x4d, 0x3c, 0xb2, 0xa1, // magic a1b23c4d, little-endian
      0x02, 0x00, 0x04, 0x00, // version 2.4
      0, 0, 0, 0, // thiszone
      0, 0, 0, 0, // sigfigs
      0xff, 0xff, 0x00, 0x00, // snaplen 65535
      0x01, 0x00, 0x00, 0x00, // LINKTYPE_ETHERNET
      0xa5, 0xa5, 0xa5, 0xa5,
    ],
  );
});

t.test('record: header fields then the frame bytes, nothing else touched', async (t) => {
  const frame = Buffer.from([1, 2, 3, 4, 5, 6, 7]);
  const b = Buffer.alloc(RECORD_HEADER_LEN + 8, 0xa5);
  const end = writeRecord(b, 0, frame, 2, 4, 1500, 0x01020304, 999_999_999);
  t.equal(end, RECORD_HEADER_LEN + 4);
  t.equal(b.readUInt32LE(0), 0x01020304, 'ts_sec');
  t.equal(b.readUInt32LE(4), 999_999_999, 'ts_nsec');
  t.equal(b.readUInt32LE(8), 4, 'incl_len');
  t.equal(b.readUInt32LE(12), 1500, 'orig_len');
  t.same([...b.subarray(16, 20)], [3, 4, 5, 6], 'frame bytes from the given offset');
  t.same([...b.subarray(20)], [0xa5, 0xa5, 0xa5, 0xa5], 'bytes after the record untouched');
});

t.test('record frames of every small size, from and to any offset of many buffers, byte for byte', async (t) => {
  // Sizes on both sides of the small-frame copy, buffers sharing one ArrayBuffer (pool slices) and
  // more buffers than the copy keeps views of, so every path of its view cache is taken.
  const pooled = Array.from({ length: 6 }, () => Buffer.from('pooled slice of shared memory'.repeat(12)));
  const sources = [...pooled, ...Array.from({ length: 10 }, (_, k) => Buffer.from(Array.from({ length: 400 }, (_, i) => (i * 31 + k * 7) & 0xff)))];
  const dests = Array.from({ length: 12 }, () => Buffer.alloc(600, 0xee));
  let bad = 0;
  let badViews = 0;
  let n = 0;
  for (let len = 0; len <= 130; len++) {
    const src = sources[len % sources.length]!;
    const dst = dests[(len * 5) % dests.length]!;
    const srcOff = (len * 13) % Math.max(1, src.length - len);
    const off = (len * 7) % 200;
    // Seconds past 2^31: stored unsigned.
    const sec = 0xfedcba98 - len;
    const want = Buffer.alloc(600, 0xee);
    want.writeUInt32LE(sec, off);
    want.writeUInt32LE(2, off + 4);
    want.writeUInt32LE(len, off + 8);
    want.writeUInt32LE(len + 3, off + 12);
    src.copy(want, off + RECORD_HEADER_LEN, srcOff, srcOff + len);
    dst.fill(0xee);
    let end = writeRecord(dst, off, src, srcOff, len, len + 3, sec, 2);
    if (end !== off + RECORD_HEADER_LEN + len || !dst.equals(want)) bad++;
    // The same through views the caller keeps (the writer's chunk, the batch's slab).
    dst.fill(0xee);
    end = writeRecordViews(dst, dataViewOf(dst), off, src, dataViewOf(src), srcOff, len, len + 3, sec, 2);
    if (end !== off + RECORD_HEADER_LEN + len || !dst.equals(want)) badViews++;
    n++;
  }
  t.equal(bad, 0, `${n} records, each the header and exactly its frame, nothing around it touched`);
  t.equal(badViews, 0, `${n} records through the caller's views, the same`);
});
