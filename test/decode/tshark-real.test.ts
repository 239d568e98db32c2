/**
 * The decoder against tshark on the third-party captures in
 * ../shared/pcaps/real (never copied into the project). Skips when the
 * directory is absent; MIRRORCAP_REAL_PCAPS points elsewhere.
 */
import { existsSync, readdirSync } from 'node:fs';
import t from 'tap';
import { compareCapture, QUIRKS } from './tshark-compare.js';

// tshark runs once per file: about 20 s here, more on a busy machine.
t.setTimeout(180_000);

const DIR = process.env.MIRRORCAP_REAL_PCAPS ?? '/work/shared/pcaps/real';

t.test('real captures: every frame and field as tshark sees it', { skip: existsSync(DIR) ? false : `${DIR} absent` }, async (t) => {
  const files = readdirSync(DIR)
    .filter((f) => /\.pcap(ng)?$/.test(f))
    .sort();
  const excused = new Map<string, number>();
  let frames = 0;
  let inner = 0;
  let fields = 0;
  for (const f of files) {
    const r = await compareCapture(`${DIR}/${f}`, f);
    t.same(r.diffs, [], `${f}: ${r.frames} frames, ${r.innerFrames} inner, ${r.fieldsCompared} fields`);
    for (const e of r.excused) excused.set(e.quirk, (excused.get(e.quirk) ?? 0) + 1);
    frames += r.frames;
    inner += r.innerFrames;
    fields += r.fieldsCompared;
  }
  for (const [id, n] of excused) t.comment(`tshark quirk ${id} x${n}: ${QUIRKS.find((q) => q.id === id)?.reason}`);
  t.comment(`${files.length} files, ${frames} frames, ${inner} inner VXLAN frames, ${fields} fields compared`);
});
