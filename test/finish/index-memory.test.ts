/**
 * indexMemory's recycler: what it hands out again, and what it never takes back (a buffer it
 * did not make, one it already holds, beyond its limit).
 */
import t from 'tap';
import { Recycler } from '../../src/finish/index-memory.js';

t.test('a buffer given back is taken again, by size class (powers of two, at least 4 KiB)', async (t) => {
  const r = new Recycler(1 << 20);
  const a = r.take(100);
  t.equal(a.byteLength, 4096, 'small: 4 KiB');
  t.equal(r.take(5000).byteLength, 8192, 'rounded up to a power of two');
  new Uint8Array(a).fill(7);
  r.give(a);
  t.equal(r.kept, 4096);
  t.not(r.take(8192), a, 'another size class: a new buffer');
  const again = r.take(4000);
  t.equal(again, a, 'the same size class: the buffer given back');
  t.equal(new Uint8Array(again)[17], 7, 'as it was left (never zeroed: the taker writes first)');
  t.equal(r.kept, 0);
});

t.test('it never takes back a buffer it did not make or claim, nor one twice, nor beyond its limit', async (t) => {
  const r = new Recycler(16384);
  r.give(new ArrayBuffer(4096));
  t.equal(r.kept, 0, 'a foreign buffer (say, of Node\'s Buffer pool) is left alone');
  const a = r.take(4096);
  r.give(a);
  r.give(a);
  t.equal(r.kept, 4096, 'given twice, kept once');
  t.equal(r.take(4096), a);
  t.not(r.take(4096), a, 'and handed out once');
  const moved = new ArrayBuffer(8192);
  r.claim(moved);
  r.give(moved);
  t.equal(r.kept, 8192, 'a claimed buffer (transferred here whole) is taken back');
  const big = r.take(16384);
  r.give(big);
  t.equal(r.kept, 8192, 'beyond the limit: left to the collector');
  const odd = new ArrayBuffer(5000);
  r.claim(odd);
  r.give(odd);
  t.equal(r.kept, 8192, 'not a size class: left alone');
});

t.test('a lease gives back everything taken through it, once', async (t) => {
  const r = new Recycler(1 << 20);
  const lease = r.lease();
  const a = lease.int32(1000);
  const b = lease.float64(1000);
  const c = lease.buffer(10);
  t.ok(a.length >= 1000 && b.length >= 1000 && c.length >= 10, 'at least what was asked');
  t.equal(r.kept, 0);
  lease.end();
  t.equal(r.kept, a.buffer.byteLength + b.buffer.byteLength + c.buffer.byteLength, 'all back at end()');
  lease.end();
  t.equal(r.kept, a.buffer.byteLength + b.buffer.byteLength + c.buffer.byteLength, 'a second end() gives nothing twice');
});

t.test('grow: twice the size, the same kind of array, its contents copied, the old buffer given back', async (t) => {
  const r = new Recycler(1 << 20);
  const a = r.float64(512);
  a[0] = 1.5;
  a[511] = -2;
  const b = r.grow(a);
  t.ok(b instanceof Float64Array);
  t.equal(b.length, 1024);
  t.same([b[0], b[511]], [1.5, -2], 'contents copied');
  t.equal(r.kept, 4096, "the old buffer is kept for reuse");
  t.equal(r.take(4096), a.buffer, 'and taken again');
  const i = r.grow(r.int32(1024));
  t.ok(i instanceof Int32Array && i.length === 2048);
});
