import t from 'tap';
import { Batch } from '../../src/source/batch.js';

t.test('Batch.view is a DataView of the slab of the moment, made once per slab', async (t) => {
  // Slices of Node's shared pool: byteOffset is not 0, so a view of the whole ArrayBuffer would be wrong.
  const a = Buffer.from('first slab, a slice of the shared pool');
  const b = Buffer.from('second slab: other bytes, another length');
  t.not(a.byteOffset, 0, 'the slab starts inside its ArrayBuffer');
  const batch = new Batch(4, a);
  const same = (view: DataView, slab: Buffer): boolean => view.byteLength === slab.length && slab.every((x, i) => view.getUint8(i) === x);
  const first = batch.view;
  t.ok(same(first, a), 'views exactly the slab');
  t.equal(batch.view, first, 'the same view while the slab stays');
  batch.slab = b;
  t.ok(same(batch.view, b), 'a source swaps the slab: the view follows');
  t.not(batch.view, first);
  batch.slab = a;
  t.ok(same(batch.view, a), 'and back');
});
