/**
 * Bench section `tunnel`: the pipeline's hot path for one datagram, VXLAN as AWS Traffic
 * Mirroring sends it to an ENI or NLB, against the same frames as a Gateway Load Balancer
 * endpoint delivers them (GENEVE with the three GWLB options, IPv4, UDP, then the VXLAN
 * datagram), in the same run, over the decode section's frame mix and over 64-byte frames.
 * The sessions' output only counts: this is the cost GENEVE adds per datagram (header, option
 * walk, inner IP/UDP, the inner source as key), not disk or socket work. bytes/frame shows
 * whether the GENEVE path allocates.
 *
 *   node dist/test/bench/run.js tunnel [--quick]
 */
import { pathToFileURL } from 'node:url';
import { resolveConfig } from '../../src/config.js';
import { gwlbTemplate, GWLB_WRAP_LEN, writeGwlbWrap } from '../../src/replay/replay.js';
import { VXLAN_HEADER_LEN, writeVxlanHeader } from '../../src/decode/vxlan.js';
import { newDropCounters } from '../../src/drops.js';
import { Pipeline } from '../../src/session/pipeline.js';
import { Router } from '../../src/session/router.js';
import { Session, type SessionOutput } from '../../src/session/session.js';
import { Batch } from '../../src/source/batch.js';
import { MIX_DESCRIPTION, measureCases, printResults, type Case, type Mix } from './decode.js';


/** Counts what it is given; nothing is kept. */
class CountingOutput implements SessionOutput {
  n = 0;
  readonly saturated = false;
  append(): boolean {
    this.n++;
    return true;
  }
  stats(): never {
    throw new Error('not used');
  }
  configure(): void {}
}

function pipeline(): Pipeline {
  const config = resolveConfig(new Map(), {});
  const router = new Router({ sessionKey: 'vni', strict: false, maxSessions: 16, configured: [], defaults: config }, (sc, gwlb) => new Session(sc, newDropCounters(), new CountingOutput(), gwlb));
  return new Pipeline(router, null);
}

/** One batch of the mix's frames (or `size`-byte cuts of them) as VXLAN datagrams, GWLB-wrapped or not. */
function batchOf(mix: Mix, geneve: boolean, size: number | null): Batch {
  const n = mix.offsets.length;
  const parts: Buffer[] = [];
  const template = gwlbTemplate({ endpointId: '0123456789abcdef', attachmentId: '0000000000000000' });
  for (let i = 0; i < n; i++) {
    const len = size ?? mix.lengths[i]!;
    const frame = mix.slab.subarray(mix.offsets[i]!, mix.offsets[i]! + Math.min(len, mix.lengths[i]!));
    const vx = Buffer.alloc(VXLAN_HEADER_LEN + frame.length);
    writeVxlanHeader(vx, 0, 1 + (i % 3));
    frame.copy(vx, VXLAN_HEADER_LEN);
    if (!geneve) {
      parts.push(vx);
      continue;
    }
    const w = Buffer.alloc(GWLB_WRAP_LEN);
    writeGwlbWrap(w, 0, template, i, vx.length);
    parts.push(Buffer.concat([w, vx]));
  }
  const b = new Batch(n, Buffer.concat(parts));
  let off = 0;
  parts.forEach((p, i) => {
    b.offsets[i] = off;
    b.lengths[i] = p.length;
    b.wireLengths[i] = p.length;
    b.srcAddr.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1 + (i % 5)], i * 16);
    off += p.length;
  });
  b.count = n;
  return b;
}

/** A case running `frames` datagrams through the pipeline, a whole batch per call. */
function pipelineCase(geneve: boolean, size: number | null): Case {
  let p: Pipeline | null = null;
  let batch: Batch | null = null;
  return (mix, frames) => {
    p ??= pipeline();
    batch ??= batchOf(mix, geneve, size);
    const sink = geneve ? p.processGeneve : p.process;
    let done = 0;
    while (done < frames) {
      batch.count = Math.min(batch.capacity, frames - done);
      sink(batch);
      done += batch.count;
    }
    return p.datagrams | 0;
  };
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const { frames, reps, results } = await measureCases(
    [
      ['VXLAN, mix', pipelineCase(false, null)],
      ['GENEVE (GWLB) -> VXLAN, mix', pipelineCase(true, null)],
      ['VXLAN, 64 B', pipelineCase(false, 64)],
      ['GENEVE (GWLB) -> VXLAN, 64 B', pipelineCase(true, 64)],
    ],
    opts,
  );
  printResults(`\n## tunnel: pipeline per datagram, ${(frames / 1e6).toFixed(0)} M datagrams per row, best of ${reps}; ${MIX_DESCRIPTION}`, results);
  const ratio = (a: number, b: number): string => `${((results[b]!.nsPerFrame / results[a]!.nsPerFrame - 1) * 100).toFixed(0)} %`;
  console.log(
    `GENEVE costs +${ratio(0, 1)} per datagram on the mix, +${ratio(2, 3)} at 64 B; ${results[1]!.bytesPerFrame.toFixed(2)} and ${results[3]!.bytesPerFrame.toFixed(2)} bytes/frame allocated on its path`,
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run({ quick: process.argv.includes('--quick') });
