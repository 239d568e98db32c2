/**
 * The shape of the code, checked: data flows one way through the rooms of src/ (see
 * docs/architecture.md), errors carry codes, and a few facts have exactly one home.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { arrowsBack, cycles, importGraph, roomOf, SRC_DIR } from './lib/imports.js';

const graph = importGraph();
const source = (m: string): string => readFileSync(join(SRC_DIR, m), 'utf8');

t.test('every module of src/ belongs to a room', async (t) => {
  for (const m of graph.modules) t.doesNotThrow(() => roomOf(m), m);
});

t.test('no import runs from a lower room to a higher one, and there are no cycles', async (t) => {
  t.same(arrowsBack(graph), [], 'arrows back up the pipeline');
  t.same(cycles(graph), [], 'import cycles');
});

t.test('errors thrown by our modules carry a code', async (t) => {
  for (const m of graph.modules) {
    const bare = [...source(m).matchAll(/throw new (Error|RangeError|TypeError)\(/g)].length;
    t.equal(bare, 0, `${m}: no bare Error/RangeError/TypeError thrown (use errors.ts codedError or a coded class)`);
  }
});

t.test('the .part suffix has one home (capture/naming.ts)', async (t) => {
  const knowing = graph.modules.filter((m) => /['"]\.part['"]/.test(source(m)));
  t.same(knowing, ['capture/naming.ts']);
});
