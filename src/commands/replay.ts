/** `mirrorcap replay <capture> --target HOST:PORT`: see src/replay/replay.ts. */
import { CaptureError } from '../pcap/errors.js';
import { ConfigError, MAX_VNI, parseEndpointId, optionsHelp, positiveNumber, resolveOption, type Endpoint, type OptionSpec } from '../config.js';
import { replay, type Pace } from '../replay/replay.js';
import { orUsageError, toolArguments, usageError } from './common.js';

const TARGET: OptionSpec = { name: 'target', kind: 'endpoint', default: '127.0.0.1:4789', help: 'where to send: the mirror target (HOST:PORT, an IP address)' };
const VNI: OptionSpec = { name: 'vni', kind: 'count', default: '1', max: MAX_VNI, help: 'VXLAN network identifier (the mirror session\'s VirtualNetworkId)' };
const RATE: OptionSpec = { name: 'rate', kind: 'count', default: '0', min: 1, zeroOff: true, help: 'packets per second, evenly spaced' };
const SPEED: OptionSpec = { name: 'speed', kind: 'text', default: '1', help: 'the capture\'s own timing, this many times faster (1 = as captured)' };
const FLAT_OUT: OptionSpec = { name: 'flat-out', kind: 'bool', default: 'false', help: 'as fast as the socket takes them' };
const LOOP: OptionSpec = { name: 'loop', kind: 'count', default: '1', min: 1, help: 'send the capture this many times' };
const HASH: OptionSpec = { name: 'source-port-hash', kind: 'bool', default: 'false', help: 'outer UDP source port from a hash of the inner 5-tuple, as AWS does (64 ports)' };
const ENCAP: OptionSpec = { name: 'encap', kind: 'enum', values: ['vxlan', 'geneve'], default: 'vxlan', help: 'vxlan = as Traffic Mirroring sends to an ENI or NLB; geneve = as a Gateway Load Balancer endpoint delivers it (GENEVE to 6081 around IPv4/UDP/VXLAN)' };
const GWLB: OptionSpec = { name: 'gwlb', kind: 'text', default: '', help: 'with --encap geneve: the GWLB endpoint id in its options (16 hex digits, or vpce-<17 hex>: the last 16 are taken); default 0000000000000001' };
const REPLAY_OPTIONS = [TARGET, VNI, RATE, SPEED, FLAT_OUT, LOOP, HASH, ENCAP, GWLB];

export const REPLAY_HELP = `Usage: mirrorcap replay <capture> --target HOST:PORT [--vni N] [--rate PPS | --speed X | --flat-out] [--loop N] [--source-port-hash] [--encap geneve [--gwlb ID]]

Sends each frame of a capture (pcap or pcapng) as a VXLAN datagram, as AWS Traffic
Mirroring would, to test a mirror target or a deployment before AWS sends anything.
Prints what it sent and stops by itself at the end of the capture (or of N loops).
A frame longer than one datagram carries (65,499 bytes after the VXLAN header) is sent
cut to that length, and counted and listed in the summary.
Exit status: 0 sent, 1 the capture is corrupt or the target refused datagrams (ICMP
port unreachable), 2 a bad command line.

Options:
${optionsHelp(REPLAY_OPTIONS)}
`;

/** --encap and --gwlb as the GWLB ids replay writes, or null for plain VXLAN. */
function gwlbOption(encap: string, id: string | null): { endpointId: string; attachmentId: string } | null {
  if (encap !== 'geneve') {
    if (id !== null) throw new ConfigError('--gwlb goes with --encap geneve');
    return null;
  }
  const endpointId = parseEndpointId(id ?? '1');
  if (endpointId === null) throw new ConfigError(`invalid gwlb "${id}": expected an endpoint id, up to 16 hex digits (or vpce-<hex>)`);
  return { endpointId, attachmentId: '0000000000000000' };
}

export async function replayCommand(argv: string[]): Promise<number> {
  const { flags, path } = await toolArguments(argv, REPLAY_OPTIONS, 'replay');
  const paces = [RATE, SPEED, FLAT_OUT].filter((o) => flags.has(o.name));
  if (paces.length > 1) usageError(`give one of --rate, --speed and --flat-out, not ${paces.map((o) => `--${o.name}`).join(' and ')}`);
  const opts = orUsageError(() => {
    const target = resolveOption(TARGET, flags) as Endpoint;
    const rate = resolveOption(RATE, flags) as number;
    const pace: Pace =
      resolveOption(FLAT_OUT, flags) === true ? { kind: 'flat-out' } : rate > 0 ? { kind: 'rate', pps: rate } : { kind: 'speed', factor: positiveNumber(SPEED, flags) };
    if (target.port === 0) throw new ConfigError('invalid target port 0: expected a port from 1 to 65535');
    return {
      path,
      host: target.host,
      port: target.port,
      vni: resolveOption(VNI, flags) as number,
      pace,
      loops: resolveOption(LOOP, flags) as number,
      sourcePortHash: resolveOption(HASH, flags) === true,
      gwlb: gwlbOption(resolveOption(ENCAP, flags) as string, resolveOption(GWLB, flags) as string | null),
    };
  });
  try {
    const r = await replay(opts);
    const n = (x: number): string => x.toLocaleString('en-US');
    const target = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
    const cut =
      r.cut === 1
        ? `1 frame longer than ${n(r.maxFrame)} bytes (the most one UDP datagram carries after the VXLAN header), sent as its first ${n(r.maxFrame)}`
        : `${n(r.cut)} frames longer than ${n(r.maxFrame)} bytes (the most one UDP datagram carries after the VXLAN header), sent as their first ${n(r.maxFrame)}`;
    const examples = r.cutExamples.map((e) => `record ${n(e.record)} (${n(e.bytes)} bytes)`).join(', ') + (r.cut > r.cutExamples.length * r.loops ? ', ...' : '');
    process.stdout.write(
      `mirrorcap replay: ${path} -> ${target} vni ${opts.vni}${opts.gwlb ? ` in GENEVE as GWLB endpoint ${opts.gwlb.endpointId}` : ''}\n` +
        `  sent      ${n(r.sent)} packets, ${n(r.bytes)} bytes of inner frames, ${r.loops} loop${r.loops === 1 ? '' : 's'}\n` +
        `  rate      ${n(Math.round(r.pps))} packets/s, ${r.mbps.toFixed(1)} Mbit/s over ${r.seconds.toFixed(3)} s (${r.sender}, ${r.sourcePorts} source port${r.sourcePorts === 1 ? '' : 's'})\n` +
        (r.skipped > 0 ? `  skipped   ${n(r.skipped)} records without an Ethernet or IP frame\n` : '') +
        (r.cut > 0 ? `  cut       ${cut}: ${examples}\n` : '') +
        (r.refused > 0 ? `  refused   ${n(r.refused)} datagrams (ICMP port unreachable: is the target listening?)\n` : ''),
    );
    if (r.refused > 0) {
      // The datagrams went nowhere: the replay did not do its work.
      process.stderr.write(`mirrorcap replay: ${target} refused ${n(r.refused)} of ${n(r.sent)} datagrams (ICMP port unreachable): is anything listening there?\n`);
      return 1;
    }
    return 0;
  } catch (err) {
    if (err instanceof CaptureError) {
      process.stderr.write(`mirrorcap replay: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
