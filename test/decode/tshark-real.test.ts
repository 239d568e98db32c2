/**
 * The decoder against tshark on the third-party captures in
 * ../shared/pcaps/real (never copied into the project). Skips, saying why,
 * when the directory is absent; MIRRORCAP_REAL_PCAPS points elsewhere.
 */
import { basename } from 'node:path';
import t from 'tap';
import { realCaptures } from '../lib/captures.js';
import { mapLimit } from '../lib/tools.js';
import { compareCapture, QUIRKS } from './tshark-compare.js';

// tshark runs once per file, two at a time: about 20 s here, more on a busy machine.
t.setTimeout(180_000);

const real = realCaptures();

t.test('real captures: every frame and field as tshark sees it', { skip: real.skip }, async (t) => {
  const excused = new Map<string, number>();
  let frames = 0;
  let inner = 0;
  let fields = 0;
  await mapLimit(real.files, 2, async (f) => {
    const r = await compareCapture(f, basename(f));
    t.same(r.diffs, [], `${r.file}: ${r.frames} frames, ${r.innerFrames} inner, ${r.fieldsCompared} fields`);
    for (const e of r.excused) excused.set(e.quirk, (excused.get(e.quirk) ?? 0) + 1);
    frames += r.frames;
    inner += r.innerFrames;
    fields += r.fieldsCompared;
  });
  for (const [id, n] of excused) t.comment(`tshark quirk ${id} x${n}: ${QUIRKS.find((q) => q.id === id)?.reason}`);
  t.comment(`${real.files.length} files, ${frames} frames, ${inner} inner VXLAN frames, ${fields} fields compared`);
});
