import t from 'tap';
import { writeFileHeader, writeRecord, FILE_HEADER_LEN, RECORD_HEADER_LEN } from '../../src/pcap/pcap.js';

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
