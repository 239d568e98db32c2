/**
 * `mirrorcap replay` at its limits: a frame longer than one UDP datagram carries, and a
 * target that refuses what it is sent. (Replay into a live appliance, pacing and loops are
 * in offline.test.ts.)
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { MAIN, waitFor } from '../lib/appliance.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURE = join(ROOT, 'pcaps', 'ipv4.pcap');
const cli = (args: string[]): SpawnSyncReturns<string> => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });

t.test('replay: a frame too big for one datagram is cut and reported; a target that refuses exits 1', async (t) => {
  const jumbo = join(ROOT, '..', 'shared', 'pcaps', 'real', 'plain-tcpdump-ipv6-jumbogram-65590B.pcap');
  if (!existsSync(jumbo)) return void t.pass(`skipped: ${jumbo} is not here`);
  const sock = createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const got: number[] = [];
  sock.on('message', (msg) => got.push(msg.length));
  const port = (sock.address() as { port: number }).port;
  const cut = cli(['replay', jumbo, '--target', `127.0.0.1:${port}`, '--flat-out']);
  t.equal(cut.status, 0, `sent, cut: exit 0 (${cut.stderr})`);
  t.match(cut.stdout, /^ {2}cut {7}1 frame longer than 65,499 bytes \(the most one UDP datagram carries after the VXLAN header\), sent as its first 65,499: record 1 \(65,590 bytes\)\n/m, 'the cut frame is counted and shown');
  await waitFor(() => got.length === 1, 5000, 'the datagram');
  t.same(got, [65_507], 'what was sent: VXLAN header + the first 65,499 bytes');

  // Nobody listens: the kernel answers ICMP port unreachable.
  await new Promise<void>((r) => sock.close(() => r()));
  const refused = cli(['replay', FIXTURE, '--target', `127.0.0.1:${port}`, '--rate', '2000', '--loop', '3']);
  t.equal(refused.status, 1, 'a target that refused datagrams: exit 1');
  t.match(refused.stdout, /refused\s+\d+ datagrams/);
  t.match(refused.stderr, new RegExp(`^mirrorcap replay: 127\\.0\\.0\\.1:${port} refused \\d+ of \\d+ datagrams \\(ICMP port unreachable\\): is anything listening there\\?\\n$`));
});

