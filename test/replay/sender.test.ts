import t from 'tap';
import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { openSender } from '../../src/replay/sender.js';
import { loadNative } from '../../src/native/addon.js';

const load = loadNative();
const kinds = load.ok ? (['sendmmsg', 'dgram'] as const) : (['dgram'] as const);
if (!load.ok) t.comment(`sendmmsg not tested: ${load.reason}`);

/** 300 datagrams of 1..300 bytes, each filled with its index. */
function slab() {
  const offsets = new Uint32Array(300);
  const lengths = new Uint32Array(300);
  let off = 0;
  for (let i = 0; i < 300; i++) {
    offsets[i] = off;
    lengths[i] = i + 1;
    off += i + 1;
  }
  const buf = Buffer.alloc(off);
  for (let i = 0; i < 300; i++) buf.fill(i & 0xff, offsets[i]!, offsets[i]! + lengths[i]!);
  return { buf, offsets, lengths };
}

for (const kind of kinds) {
  t.test(`${kind}: every datagram arrives whole, from the reported port`, async (t) => {
    const rx = createSocket({ type: 'udp6', recvBufferSize: 4 << 20 });
    const got: Buffer[] = [];
    const ports = new Set<number>();
    rx.on('message', (m, r) => (got.push(m), ports.add(r.port)));
    await new Promise<void>((r) => rx.bind(0, '::1', r));
    t.teardown(() => rx.close());
    const tx = await openSender({ host: '[::1]', port: rx.address().port, kind });
    t.equal(tx.kind, kind);
    const { buf, offsets, lengths } = slab();
    t.equal(await tx.send(buf, offsets, lengths, 0, 100), 100);
    t.equal(await tx.send(buf, offsets, lengths, 100, 200), 200);
    for (let i = 0; i < 50 && got.length < 300; i++) await sleep(10);
    await tx.close();
    t.equal(got.length, 300);
    t.ok(got.every((m, i) => m.length === i + 1 && m.every((b) => b === (i & 0xff))), 'lengths and bytes, in order');
    t.same([...ports], [tx.localPort]);
  });

  t.test(`${kind}: a destination nobody listens on is counted as refused, not thrown`, async (t) => {
    const probe = createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', r));
    const port = probe.address().port;
    await new Promise<void>((r) => probe.close(r));
    const tx = await openSender({ host: '127.0.0.1', port, kind });
    const { buf, offsets, lengths } = slab();
    for (let i = 0; i < 5; i++) {
      await tx.send(buf, offsets, lengths, i, 1);
      await sleep(10);
    }
    await tx.close();
    t.ok(tx.refused > 0, `refused ${tx.refused}`);
  });
}
