/**
 * Bench section: compiled filters on the decode section's mix of frames, beside the decoder
 * alone in the same run (the cost a filter adds to a packet is best judged against the cost
 * of decoding it). Each filter row is match() on every frame, nothing else.
 *
 * Goal (issue 12): >= 20 M frames/s and 0 bytes/frame for
 * `tcp port 443 and (host 10.0.0.1 or net 192.168.0.0/16)`.
 */
import { compileFilter } from '../../src/filter/index.js';
import { type Case, decodeCase, measureCases, MIX_DESCRIPTION, MIX_FRAMES, printResults } from './decode.js';

const GOAL = 'tcp port 443 and (host 10.0.0.1 or net 192.168.0.0/16)';
const OTHERS = ['host 10.0.0.1', 'not (port 22 or port 443)', 'vlan or ip6 and udp port 53', 'tcp[tcpflags] & tcp-push != 0 and ip[2:2] > 100'];

function filterCase(expr: string): Case {
  const { match } = compileFilter(expr);
  return (mix, frames) => {
    const { slab, offsets, lengths } = mix;
    let sink = 0;
    for (let n = 0; n < frames; n++) {
      const i = n & (MIX_FRAMES - 1);
      if (match(slab, offsets[i]!, lengths[i]!, lengths[i]!)) sink = (sink + 1) | 0;
    }
    return sink;
  };
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const { mix, frames, reps, results } = await measureCases(
    [['Decoder.decode (baseline)', decodeCase], ...[GOAL, ...OTHERS].map((e) => [`filter: ${e}`, filterCase(e)] as const)],
    opts,
  );
  const matched = [GOAL, ...OTHERS].map((e) => {
    const { match } = compileFilter(e);
    let n = 0;
    for (let i = 0; i < MIX_FRAMES; i++) if (match(mix.slab, mix.offsets[i]!, mix.lengths[i]!, mix.lengths[i]!)) n++;
    return `${((100 * n) / MIX_FRAMES).toFixed(0)}%`;
  });
  printResults(`\n## filter: ${(frames / 1e6).toFixed(0)} M frames per row, best of ${reps}; the decode ${MIX_DESCRIPTION}, avg ${mix.avgLen.toFixed(0)} B`, results);
  console.log(`frames matched: ${[GOAL, ...OTHERS].map((e, i) => `${e}: ${matched[i]}`).join('; ')}`);
  const g = results[1]!;
  console.log(
    `goal: >= 20 M frames/s and 0 bytes/frame for ${GOAL} -> ${(g.framesPerSec / 1e6).toFixed(1)} M frames/s, ${g.bytesPerFrame.toFixed(2)} bytes/frame, ${g.gcs} GCs in ${(frames / 1e6).toFixed(0)} M frames`,
  );
}
