/**
 * `mirrorcap decap <capture> --out DIR`: a capture of VXLAN traffic through the same Recorder
 * as the live appliance, read by the offline source (source/file.ts) with the capture's own
 * timestamps, so the files are the ones the appliance would have written for that traffic.
 */
import { ConfigError, OFFLINE_OPTIONS, optionsHelp, resolveConfig, resolveOption, type Config, type OptionSpec } from '../config.js';
import { VXLAN_PORT } from '../decode/vxlan.js';
import { GENEVE_PORT } from '../decode/geneve.js';
import { DROP_REASONS } from '../drops.js';
import { createLogger, type Logger } from '../log.js';
import { CaptureError } from '../pcap/errors.js';
import { OutputFolderError, Recorder, type RecorderSummary } from '../recorder.js';
import { FileSource } from '../source/file.js';
import { orUsageError, toolArguments, usageError, VERSION } from './common.js';

export interface DecapResult {
  readonly path: string;
  readonly format: string;
  readonly interfaces: number;
  readonly records: number;
  readonly decapsulated: number;
  readonly skipped: Readonly<Record<string, number>>;
  readonly unsupportedLinkTypes: Readonly<Record<string, number>>;
  readonly summary: RecorderSummary;
  readonly sessions: ReadonlyArray<{ name: string; vni: number; encap: string; packets: number; written: number; files: number }>;
  /** Set when the capture ended in a corrupt or truncated record: everything before it was written. */
  readonly error: CaptureError | null;
}

export async function decap(path: string, port: number, config: Config, log: Logger, genevePort = GENEVE_PORT): Promise<DecapResult> {
  const recorder = new Recorder(config, log, { guardDisk: false, clampTime: false, wallClock: false, ship: false, application: `mirrorcap ${VERSION}` });
  const source = new FileSource({ path, port, genevePort, pace: () => (recorder.backlogged ? recorder.drained() : undefined) });
  try {
    await recorder.start();
    await source.start(recorder.pipeline.process);
    await source.finished;
  } finally {
    await source.stop();
    await recorder.stop();
  }
  const stats = source.stats;
  return {
    path,
    format: source.format,
    interfaces: source.interfaces,
    records: source.records,
    decapsulated: stats.datagrams,
    skipped: stats.skipped,
    unsupportedLinkTypes: Object.fromEntries([...source.unsupportedLinkTypes].map(([k, v]) => [String(k), v])),
    summary: recorder.summary(),
    sessions: recorder.sessions.map((s) => {
      const snap = s.snapshot();
      return { name: snap.name, vni: snap.vni, encap: snap.encap, packets: snap.packets, written: snap.output.writtenPackets, files: recorder.catalog.filesOf(snap.name).length };
    }),
    error: source.error,
  };
}

/** The human summary `mirrorcap decap` prints. */
export function formatDecap(r: DecapResult, out: string): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const reasons = (o: Readonly<Record<string, number>>): string =>
    Object.entries(o)
      .map(([k, v]) => `${k} ${n(v)}`)
      .join(', ') || 'none';
  const dropped = Object.fromEntries(Object.entries(r.summary.dropped).filter(([k]) => (DROP_REASONS as readonly string[]).includes(k)));
  const lines = [
    `mirrorcap decap: ${r.path} (${r.format}, ${r.interfaces} interface${r.interfaces === 1 ? '' : 's'}) -> ${out}`,
    `  packets read    ${n(r.records)}`,
    `  decapsulated    ${n(r.decapsulated)}`,
    `  skipped         ${n(Object.values(r.skipped).reduce((a, b) => a + b, 0))} (${reasons(r.skipped)})`,
    `  dropped         ${n(Object.values(dropped).reduce((a, b) => a + b, 0))} (${reasons(dropped)})`,
    `  written         ${n(r.summary.writtenPackets)} packets in ${n(r.summary.filesClosed)} files`,
  ];
  if (r.summary.flowFiles > 0) lines.push(`  flow records    ${n(r.summary.flowRecords)} in ${n(r.summary.flowFiles)} files`);
  if (r.summary.filtered > 0) lines.splice(5, 0, `  filtered        ${n(r.summary.filtered)} (not matching the filter; not drops)`);
  if (r.summary.filesLeftPart > 0) lines.push(`  left as .part   ${n(r.summary.filesLeftPart)} files (could not be renamed: see the log)`);
  if (Object.keys(r.unsupportedLinkTypes).length > 0) {
    lines.push(`  link types we cannot read: ${Object.entries(r.unsupportedLinkTypes).map(([lt, c]) => `${lt} (${n(c)} packets)`).join(', ')}`);
  }
  lines.push('  sessions:');
  for (const s of r.sessions) {
    const key = s.encap === 'gwlbe' ? 'gwlbe' : `${s.encap === 'vxlan' ? 'vni' : 'geneve vni'} ${s.vni}`;
    lines.push(`    ${s.name.padEnd(24)} ${key.padEnd(18)} ${n(s.written).padStart(12)} packets  ${n(s.files).padStart(4)} files`);
  }
  if (r.sessions.length === 0) lines.push('    (none: no VXLAN or GENEVE datagrams to these ports)');
  return `${lines.join('\n')}\n`;
}

const PORT: OptionSpec = { name: 'port', kind: 'count', default: String(VXLAN_PORT), min: 1, max: 65535, help: 'UDP port of the VXLAN datagrams in the capture' };
const GENEVE_PORT_OPTION: OptionSpec = {
  name: 'geneve-port',
  kind: 'count',
  default: String(GENEVE_PORT),
  min: 0,
  max: 65535,
  help: 'UDP port of the GENEVE datagrams in the capture (a Gateway Load Balancer endpoint as mirror target); 0 = none',
};
const DECAP_OPTIONS: readonly OptionSpec[] = [PORT, GENEVE_PORT_OPTION, ...OFFLINE_OPTIONS];

export const DECAP_HELP = `Usage: mirrorcap decap <capture> --out DIR [--port 4789] [--geneve-port 6081] [options]

Reads a capture of VXLAN traffic, or GENEVE (VXLAN inside it too, as a Gateway Load Balancer
endpoint receives it), (classic pcap, either byte order, µs or ns; pcapng with
any number of interfaces; Ethernet, Linux cooked v1/v2 or raw IP) and writes exactly the
files the appliance would have written for that traffic, with the capture's timestamps
as they are (a step back in the capture stays one in the file).
Packets that are not VXLAN to --port or GENEVE to --geneve-port are counted and skipped. Memory stays flat.
Exit status: 0 done, 1 the capture is corrupt or truncated (everything before the bad
byte is written), 2 a bad command line.

Options:
${optionsHelp(DECAP_OPTIONS)}
`;

export async function decapCommand(argv: string[]): Promise<number> {
  const { flags, path } = await toolArguments(argv, DECAP_OPTIONS, 'decap');
  const port = orUsageError(() => resolveOption(PORT, flags)) as number;
  const genevePort = orUsageError(() => resolveOption(GENEVE_PORT_OPTION, flags)) as number;
  const config = orUsageError(() => resolveConfig(flags, process.env, { 'log-level': 'warn' }));
  const log = createLogger(config.logLevel, 2);
  let result: DecapResult;
  try {
    result = await decap(path, port, config, log, genevePort);
  } catch (err) {
    // A --filter that does not compile, or settings only the recorder can check (--compress zstd
    // without zstd, --compress-level alone): a bad command line.
    if (err instanceof ConfigError) usageError(err.message);
    if (err instanceof CaptureError || err instanceof OutputFolderError) {
      process.stderr.write(`mirrorcap decap: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  process.stdout.write(formatDecap(result, config.out));
  if (result.error !== null) {
    process.stderr.write(`mirrorcap decap: ${result.error.message}; every packet before it was written\n`);
    return 1;
  }
  if (result.decapsulated === 0 && Object.keys(result.unsupportedLinkTypes).length > 0) {
    process.stderr.write(
      `mirrorcap decap: ${path} holds link type ${Object.keys(result.unsupportedLinkTypes).join(', ')}, which mirrorcap cannot read (Ethernet, Linux cooked v1/v2, raw IP, BSD loopback)\n`,
    );
    return 1;
  }
  return 0;
}
