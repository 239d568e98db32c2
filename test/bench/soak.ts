/**
 * Bench section `soak` (issue 17's endurance run; only when named, it takes the minutes asked):
 *
 *   npm run bench -- soak [--minutes=10] [--rate=PPS] [--no-clients]
 *
 * mirrorcap (--source native, 10 s rotation, a ring of 5 files per session) runs for the
 * minutes asked at half the zero-loss rate of 64-byte frames (measured first, as the
 * appliance section does, unless --rate gives it). 50 sessions come and go: every 10 s the
 * load moves to the next group of 10 VNIs, so each session receives for 10 s and is quiet for
 * 40 s (its file closes when it has gone quiet for a rotation period). Every few seconds a
 * client reads a session's live stream for 2 s or runs a query over the last minute.
 *
 * Printed per minute: what was sent, RSS, open file descriptors (the fewest and the most of its
 * samples: a query holds a file of every session open while it runs, so only a rising floor is
 * a leak), the event loop's delay (p99
 * and max, from the appliance's own /metrics, reset at every scrape), files on disk and CPU.
 * Judged at the end:
 *   - flat: RSS, descriptors and event-loop delay of the last minute against the second
 *     (the first holds the warm-up);
 *   - every file whole: a --post-rotate command runs capinfos (an independent reader) on every
 *     finished file, before the ring may delete it, and writes its packet count to a ledger;
 *   - every packet accounted for: sent = received + kernel drops, received = written + drops
 *     by reason, and written = the packets capinfos counted over every finished file.
 */
import { spawn } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { httpGet, metricSum, metricValue, startAppliance, type Appliance } from '../lib/appliance.js';
import { haveTool } from '../lib/tools.js';
import { QUICK, applianceReceiver, cpuSeconds, measure, socketDrained } from './appliance.js';
import { runGeneratorProcess, type GeneratorSummary } from './generator.js';
import { printTable } from './table.js';

const MiB = 1 << 20;
const SESSIONS = 50;
/** VNIs receiving at a time; the load moves to the next group every PHASE_SECONDS. */
const GROUP = 10;
const PHASE_SECONDS = 10;
const ROTATE_SECONDS = 10;
const RING = 5;
const SAMPLE_MS = 10_000;
/** A stream or a query this often, alternately. */
const CLIENT_EVERY_MS = 3_000;
/** Flat means: the last minute within these bounds of the second. */
const RSS_GROWTH = 0.1;
const FD_GROWTH = 8;
const LAG_FACTOR = 3;

interface Sample {
  atMs: number;
  rss: number;
  fds: number;
  lagP99: number;
  lagMax: number;
  cpu: number;
  filesOnDisk: number;
  sessions: number;
}

/** A minute's samples: the last reading of gauges, the fewest and most descriptors, the worst event-loop delays, the mean CPU. */
interface Minute extends Omit<Sample, 'atMs'> {
  minute: number;
  sent: number;
  fdsMax: number;
}

function argValue(name: string): number | undefined {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (hit === undefined) return undefined;
  const n = Number(hit.slice(name.length + 3));
  if (!(n > 0)) throw new RangeError(`--${name} must be a positive number, got ${hit}`);
  return n;
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function captureFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === 'flows') continue;
    for (const f of readdirSync(join(dir, entry.name))) if (/\.pcap(\.part)?$/.test(f)) out.push(join(dir, entry.name, f));
  }
  return out;
}

/** The post-rotate command: capinfos counts the file's packets; a file it cannot read is a BAD line. */
function writeLedgerScript(root: string, ledger: string): string {
  const script = join(root, 'ledger.sh');
  writeFileSync(
    script,
    `#!/bin/sh\nif n=$(capinfos -c -M -T -r "$1" 2>/dev/null | cut -f2) && [ -n "$n" ]; then echo "OK $n $1" >> '${ledger}'; ` +
      `else echo "BAD 0 $1" >> '${ledger}'; fi\n`,
  );
  chmodSync(script, 0o755);
  return script;
}

/**
 * Reads a receiving session's live stream for 2 s, or queries the last minute, with curl;
 * resolves with what was asked and the HTTP status ("stream 200").
 */
function client(app: Appliance, n: number, vni: number): Promise<string> {
  const base = `http://127.0.0.1:${app.httpPort}`;
  const stream = n % 2 === 0;
  const url = stream ? `${base}/api/sessions/vni-${vni}/stream` : `${base}/api/query?since=1m&limit=20000&filter=${encodeURIComponent('udp and len > 60')}`;
  return new Promise((resolve) => {
    const c = spawn('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', stream ? '2' : '30', url], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // curl's 28 is its own --max-time: a stream that was still flowing when we hung up.
    c.on('close', (code) => resolve(`${stream ? 'stream' : 'query'} ${code === 0 || (stream && code === 28) ? out : `curl exit ${code}`}`));
  });
}

async function zeroLossRate(root: string): Promise<number> {
  const r = await measure(applianceReceiver('native'), '64', QUICK, root, 3);
  if (r.zeroLoss === null) throw new Error('no lossless rate found for native at 64 B: give --rate=PPS');
  return r.zeroLoss;
}

export async function run(opts: { quick: boolean }): Promise<void> {
  if (!haveTool('capinfos') || !haveTool('curl')) {
    console.log('\n## soak: skipped, it needs capinfos (tshark) and curl');
    return;
  }
  const minutes = argValue('minutes') ?? (opts.quick ? 2 : 10);
  const root = await mkdtemp(join(tmpdir(), 'mirrorcap-soak-'));
  try {
    const given = argValue('rate');
    const zeroLoss = given === undefined ? await zeroLossRate(root) : undefined;
    const rate = given ?? Math.round(zeroLoss! / 2);
    console.log(
      `\n## soak: ${minutes} min at ${rate.toLocaleString('en')} pps of 64-byte frames` +
        `${zeroLoss === undefined ? ' (--rate)' : ` (half of the ${Math.round(zeroLoss).toLocaleString('en')} pps zero-loss rate measured now)`}, ` +
        `${SESSIONS} sessions, ${GROUP} receiving at a time for ${PHASE_SECONDS} s each, --rotate-seconds ${ROTATE_SECONDS} --ring ${RING}, ` +
        `a stream or a query every ${CLIENT_EVERY_MS / 1000} s; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} on ${availableParallelism()} cores`,
    );
    const out = join(root, 'captures');
    const ledger = join(root, 'ledger.txt');
    writeFileSync(ledger, '');
    const app = await startAppliance(
      ['--out', out, '--source', 'native', '--rotate-seconds', String(ROTATE_SECONDS), '--ring', String(RING), '--post-rotate', writeLedgerScript(root, ledger)],
      {},
      30_000,
    );
    const pid = app.proc.pid!;
    const t0 = performance.now();
    const endMs = minutes * 60_000;
    const samples: Sample[] = [];
    const sentByMinute: number[] = [];
    const statuses = new Map<string, number>();
    const gens: GeneratorSummary[] = [];
    let phase = 0;
    // The group receiving now, once its sessions surely exist (a second after its first packet), else the one before.
    let group = { base: 1, since: Infinity, before: 1 };
    let stopped = false;
    const stop = new AbortController();
    const nap = (ms: number): Promise<void> => sleep(ms, undefined, { signal: stop.signal }).catch(() => undefined);

    const sampler = (async () => {
      let cpu0 = cpuSeconds(pid);
      while (!stopped) {
        await nap(SAMPLE_MS);
        if (stopped) break;
        const metrics = (await httpGet(app.httpPort, '/metrics')).body;
        const cpu1 = cpuSeconds(pid);
        samples.push({
          atMs: performance.now() - t0,
          rss: rssOf(pid),
          fds: readdirSync(`/proc/${pid}/fd`).length,
          lagP99: metricValue(metrics, 'nodejs_eventloop_lag_p99_seconds') ?? NaN,
          lagMax: metricValue(metrics, 'nodejs_eventloop_lag_max_seconds') ?? NaN,
          cpu: (cpu1 - cpu0) / (SAMPLE_MS / 1000),
          filesOnDisk: captureFiles(out).length,
          sessions: metricSum(metrics, 'mirrorcap_sessions'),
        });
        cpu0 = cpu1;
      }
    })();
    const clients = (async () => {
      for (let n = 0; !stopped && !process.argv.includes('--no-clients'); n++) {
        await nap(CLIENT_EVERY_MS);
        if (stopped) break;
        const status = await client(app, n, performance.now() - group.since > 1000 ? group.base : group.before);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    })();

    try {
      for (; performance.now() - t0 < endMs; phase++) {
        const vniBase = 1 + (phase % (SESSIONS / GROUP)) * GROUP;
        const seconds = Math.min(PHASE_SECONDS, (endMs - (performance.now() - t0)) / 1000);
        if (seconds < 0.5) break;
        group = { base: vniBase, since: performance.now(), before: phase === 0 ? vniBase : group.base };
        const gen = await runGeneratorProcess({ host: '127.0.0.1', port: app.udpPort, vnis: GROUP, vniBase, size: '64', rate: rate, durationSec: seconds });
        gens.push(gen);
        const minute = Math.floor((performance.now() - t0 - 1) / 60_000);
        sentByMinute[minute] = (sentByMinute[minute] ?? 0) + gen.sent;
      }
    } finally {
      stopped = true;
      stop.abort();
    }
    await Promise.all([sampler, clients]);
    await socketDrained(app.udpPort);
    const metrics = (await httpGet(app.httpPort, '/metrics')).body;
    const code = await app.stop();
    if (code !== 0) throw new Error(`mirrorcap exited ${code}: ${app.stderr()}`);
    const summary = app.logs.find((l) => l.event === 'shutdown');
    if (summary === undefined) throw new Error('mirrorcap logged no shutdown summary');

    const minutesTable = perMinute(samples, sentByMinute);
    const rows = [['minute', 'sent pps', 'RSS', 'open fds (min-max)', 'event loop p99', 'event loop max', 'CPU', 'files on disk', 'sessions']];
    for (const m of minutesTable) {
      rows.push([
        String(m.minute + 1),
        Math.round(m.sent / 60).toLocaleString('en'),
        `${(m.rss / MiB).toFixed(0)} MiB`,
        `${m.fds}-${m.fdsMax}`,
        `${(m.lagP99 * 1000).toFixed(1)} ms`,
        `${(m.lagMax * 1000).toFixed(1)} ms`,
        `${(100 * m.cpu).toFixed(0)} %`,
        String(m.filesOnDisk),
        String(m.sessions),
      ]);
    }
    printTable(rows);

    const lines = readFileSync(ledger, 'utf8').trim().split('\n').filter((l) => l !== '');
    const bad = lines.filter((l) => l.startsWith('BAD'));
    const ledgered = lines.reduce((n, l) => n + Number(l.split(' ')[1]), 0);
    const skipped = app.logs.filter((l) => l.event === 'post_rotate_skipped').length;
    const finished = metricSum(metrics, 'mirrorcap_files_rotated_total');
    const sent = gens.reduce((n, g) => n + g.sent, 0);
    const received = metricValue(metrics, 'mirrorcap_datagrams_total') ?? NaN;
    const kernelDrops = metricValue(metrics, 'mirrorcap_socket_drops_total') ?? NaN;
    const written = summary.writtenPackets as number;
    const dropped = Object.values(summary.dropped as Record<string, number>).reduce((a, b) => a + b, 0);
    const refused = gens.reduce((n, g) => n + g.refused, 0);

    const verdicts: [boolean, string][] = [];
    if (minutesTable.length >= 3) {
      const second = minutesTable[1]!;
      const last = minutesTable[minutesTable.length - 1]!;
      verdicts.push([last.rss <= second.rss * (1 + RSS_GROWTH), `RSS flat: minute 2 ${(second.rss / MiB).toFixed(0)} MiB, last ${(last.rss / MiB).toFixed(0)} MiB (bound +${100 * RSS_GROWTH} %)`]);
      verdicts.push([last.fds <= second.fds + FD_GROWTH, `open descriptors flat: the fewest in minute 2 ${second.fds}, in the last ${last.fds} (bound +${FD_GROWTH})`]);
      verdicts.push([
        last.lagP99 <= second.lagP99 * LAG_FACTOR + 0.005,
        `event-loop delay flat: p99 minute 2 ${(second.lagP99 * 1000).toFixed(1)} ms, last ${(last.lagP99 * 1000).toFixed(1)} ms (bound ${LAG_FACTOR}x + 5 ms)`,
      ]);
    } else {
      console.log('(fewer than 3 minutes: no flatness verdicts)');
    }
    verdicts.push([bad.length === 0 && lines.length + skipped >= finished, `every file whole: capinfos read ${lines.length} finished files (${bad.length} unreadable), post-rotate skipped ${skipped}, ${finished} closed while running`]);
    verdicts.push([sent === received + kernelDrops && refused === 0, `sent = received + kernel drops: ${sent} = ${received} + ${kernelDrops}${refused > 0 ? ` (${refused} refused)` : ''}`]);
    verdicts.push([kernelDrops === 0, `no loss at half the zero-loss rate: the kernel dropped ${kernelDrops} of ${sent} (${((100 * kernelDrops) / Math.max(1, sent)).toFixed(2)} %)`]);
    verdicts.push([received === written + dropped, `received = written + dropped: ${received} = ${written} + ${dropped}`]);
    verdicts.push([written === ledgered && skipped === 0, `written = packets capinfos counted in every finished file: ${written} = ${ledgered}`]);
    verdicts.push([[...statuses.keys()].every((s) => s.endsWith(' 200')), `clients: ${[...statuses].map(([s, n]) => `${n} x ${s}`).join(', ')}`]);
    console.log('\nsoak goals (issue 17), this run:');
    for (const [met, text] of verdicts) console.log(`  [${met ? 'met' : 'not met'}] ${text}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** The samples of each minute: the last reading of gauges, the fewest and most descriptors, the worst of the event-loop delays, the mean CPU. */
function perMinute(samples: readonly Sample[], sentByMinute: readonly number[]): Minute[] {
  const byMinute = new Map<number, Sample[]>();
  for (const s of samples) {
    const minute = Math.floor((s.atMs - 1) / 60_000);
    byMinute.set(minute, [...(byMinute.get(minute) ?? []), s]);
  }
  return [...byMinute].map(([minute, group]) => ({
    ...group[group.length - 1]!,
    minute,
    sent: sentByMinute[minute] ?? 0,
    fds: Math.min(...group.map((s) => s.fds)),
    fdsMax: Math.max(...group.map((s) => s.fds)),
    lagP99: Math.max(...group.map((s) => s.lagP99)),
    lagMax: Math.max(...group.map((s) => s.lagMax)),
    cpu: group.reduce((sum, s) => sum + s.cpu, 0) / group.length,
  }));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run({ quick: process.argv.includes('--quick') });
}
