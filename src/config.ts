/**
 * Configuration: defaults < config file (YAML or JSON) < MIRRORCAP_* environment < flags,
 * resolved once into a frozen Config. Every option is declared once in OPTIONS; the flag
 * parser, the environment reader, the file reader, validation and `--help` all read that table.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { addrForName, canonicalAddr, parseCidr, type Cidr } from './addr.js';
import { DEFAULT_FLOW_FORMAT, EMPTY_FLOW_INFO, FlowFormatError, parseFlowFormat, resolveFlowSessionInfo, type FlowFormat, type FlowSessionInfo } from './flowformat.js';
import { formatDuration, formatSize, parseDuration, parseSize } from './units.js';

export class ConfigError extends Error {
  readonly code = 'ERR_MIRRORCAP_CONFIG';
  override readonly name = 'ConfigError';
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/**
 * What a session entry of the config file may set for itself; the rest of Config supplies
 * the defaults. These keys are the options marked perSession in OPTIONS (a test checks),
 * and they are what a reload (SIGHUP) applies to running sessions.
 */
export interface SessionSettings {
  /** Close the file before it would grow past this many bytes; 0 = off. */
  readonly rotateSize: number;
  /** Close the file once its first packet is this many seconds old; 0 = off. */
  readonly rotateSeconds: number;
  /** Close the file after this many packets; 0 = off. */
  readonly rotatePackets: number;
  /** rotateSeconds counts from 00:00 UTC (every file ends on a multiple of it), not from the file's first packet. */
  readonly rotateAlign: boolean;
  /** Finished files kept per session, oldest deleted first; 0 = keep all. */
  readonly ring: number;
  /** Drop a frame whose IP packet was seen within this many seconds (both ends mirrored); 0 = off. */
  readonly dedup: number;
  readonly snaplen: number;
  /** Write VPC Flow Logs records of the session's inner IP packets (docs/flows.md). */
  readonly flows: boolean;
  /** The session's values of the fields that describe the mirrored interface (account-id, region, ...). */
  readonly flowFields: FlowSessionInfo;
  /** pcap-filter expression on the inner frame: what does not match is not written; null = all. */
  readonly filter: string | null;
  /** File format of the captures: classic pcap (nanoseconds) or pcapng (one interface per file, drop statistics). */
  readonly format: 'pcap' | 'pcapng';
}

export interface SessionConfig extends SessionSettings {
  readonly vni: number;
  readonly name: string;
  /** Outer source address this session is bound to (session-key vni+src), or null for any. */
  readonly source: string | null;
  /** How its packets arrive when not VXLAN: GENEVE with Ethernet, or with raw IP (a GWLB endpoint's, or keyed by VNI). */
  readonly encap?: 'geneve' | 'gwlbe' | 'geneve-ip';
  /** The GWLB endpoint id (16 lowercase hex digits) of a gwlbe session; its vni is 0. */
  readonly endpoint?: string;
}

export type SessionKey = 'vni' | 'vni+src';

export interface Config extends SessionSettings {
  /** UDP addresses for VXLAN, one socket each (e.g. 4789 and Linux's 8472); at least one. */
  readonly listen: readonly Endpoint[];
  /** UDP address for GENEVE (a Gateway Load Balancer endpoint as mirror target); null = off. */
  readonly geneve: Endpoint | null;
  readonly http: Endpoint;
  /** auto, native, dgram, pcap:<interface> or afpacket:<interface>. */
  readonly source: string;
  /** Receive threads (source/workers.ts); 1 = the main thread receives. */
  readonly workers: number;
  /** BPF filter of the interface source; null = `udp dst port <listen port>`. */
  readonly bpf: string | null;
  readonly out: string;
  readonly sessionKey: SessionKey;
  readonly strict: boolean;
  readonly recvBuffer: number;
  readonly flushInterval: number;
  readonly queueSize: number;
  /** Write-behind window in bytes (writer.ts); 0 = the kernel's own writeback. */
  readonly writeBehind: number;
  readonly maxBuffer: number;
  readonly maxSessions: number;
  readonly logLevel: string;
  /** Outer sources allowed to send; empty = any. */
  readonly allow: readonly Cidr[];
  /** Budget for the finished files of all sessions together; 0 = none. */
  readonly maxTotalBytes: number;
  /** Free space below which writing pauses; null = min(1 GiB, 5 % of the filesystem). */
  readonly minFreeBytes: number | null;
  /** Bearer token the /api routes require; null = open. */
  readonly httpToken: string | null;
  /** PEM certificate (chain) and key files: HTTPS instead of HTTP; both or neither. */
  readonly httpTlsCert: string | null;
  readonly httpTlsKey: string | null;
  /** Queries (GET /api/query) answered at once; more get 429. */
  readonly maxQueries: number;
  /** Write an index sidecar beside each finished file. */
  readonly index: boolean;
  /** Command run with each finished file's path as its argument; null = none. */
  readonly postRotate: string | null;
  /** Flow records: aggregation interval (whole seconds), record format, flows held at most, records kept for /api/flows. */
  readonly flowInterval: number;
  readonly flowFormat: FlowFormat;
  readonly maxFlows: number;
  readonly flowRing: number;
  /** This appliance's name in flow log ids; null = the host name. */
  readonly nodeName: string | null;
  /** TCP address serving the all-session live stream as PCAP-over-IP; null = none. */
  readonly pcapOverIp: Endpoint | null;
  /** Live stream clients at once (HTTP and PCAP-over-IP together). */
  readonly maxStreams: number;
  /** Bytes each stream client may have waiting; beyond it its packets drop. */
  readonly streamBuffer: number;
  /** Compression of finished files (X.pcap.gz, X.pcap.zst). */
  readonly compress: 'none' | 'gzip' | 'zstd';
  /** 0 = the format's default (gzip 6, zstd 3). */
  readonly compressLevel: number;
  /** s3://BUCKET[/PREFIX] every finished file goes to; null = no uploads. The other s3 options: src/finish/s3-settings.ts. */
  readonly s3: string | null;
  readonly s3Key: string;
  readonly s3Endpoint: string | null;
  readonly s3Region: string | null;
  readonly s3Sse: 'none' | 'AES256' | 'aws:kms';
  readonly s3KmsKeyId: string | null;
  readonly s3StorageClass: string | null;
  readonly s3Concurrency: number;
  readonly s3DeleteAfterUpload: boolean;
  /** The {host} of object keys; null = the host name. */
  readonly s3Host: string | null;
  readonly configFile: string | null;
  readonly sessions: readonly SessionConfig[];
}

type Kind = 'size' | 'size-auto' | 'duration' | 'count' | 'bool' | 'enum' | 'endpoint' | 'endpoints' | 'path' | 'cidrs' | 'text' | 'source' | 'flow-format' | 'flow-fields';

interface OptionSpec {
  readonly name: string;
  /** Where the value goes in Config; commands' own options (decap --port, replay's) have none. */
  readonly key?: keyof Config;
  readonly kind: Kind;
  readonly default: string;
  readonly help: string;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** Also valid inside a session entry of the config file. */
  readonly perSession?: boolean;
  /** 0 is allowed below min and means "off". */
  readonly zeroOff?: boolean;
  /** Only the live appliance (`run`) takes it; `decap` does not. */
  readonly liveOnly?: boolean;
}

export const MAX_VNI = 0xffffff;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const OPTIONS: readonly OptionSpec[] = [
  { name: 'listen', liveOnly: true, key: 'listen', kind: 'endpoints', default: '0.0.0.0:4789', help: 'UDP addresses for VXLAN, ADDR:PORT[,ADDR:PORT...], one socket each (e.g. 0.0.0.0:4789,0.0.0.0:8472; IPv4 host:port or [v6]:port; [::] takes both)' },
  { name: 'geneve', liveOnly: true, key: 'geneve', kind: 'endpoint', default: '', help: 'UDP address for GENEVE from a Gateway Load Balancer endpoint (usually 0.0.0.0:6081; VXLAN inside it is routed like VXLAN); empty = off' },
  { name: 'source', liveOnly: true, key: 'source', kind: 'source', default: 'auto', help: 'how to receive: native (recvmmsg, kernel timestamps), dgram (node:dgram), auto = native when its addon is built, pcap:<iface> = capture VXLAN on an interface with libpcap, afpacket:<iface> = the same through a memory-mapped AF_PACKET ring (kernel filter and timestamps, no copy)' },
  { name: 'workers', liveOnly: true, key: 'workers', kind: 'count', default: '1', min: 1, max: 32, help: 'receive threads, each with its own socket (SO_REUSEPORT, native source) or packet ring (PACKET_FANOUT, afpacket:<iface>); the main thread merges them by kernel timestamp, so every file stays in time order (docs/performance.md)' },
  { name: 'bpf', liveOnly: true, key: 'bpf', kind: 'text', default: '', help: 'BPF filter for --source pcap:<iface> or afpacket:<iface> (default: udp dst port <listen port>); an error with any other source' },
  { name: 'http', liveOnly: true, key: 'http', kind: 'endpoint', default: '0.0.0.0:9789', help: 'HTTP address for /metrics, /healthz, /readyz and /api' },
  { name: 'out', key: 'out', kind: 'path', default: './captures', help: 'output folder; one subfolder per session' },
  { name: 'rotate-size', key: 'rotateSize', kind: 'size', default: '100MiB', min: 4096, zeroOff: true, help: 'start a new file before one grows past this size', perSession: true },
  { name: 'rotate-seconds', key: 'rotateSeconds', kind: 'duration', default: '300', min: 1, zeroOff: true, help: 'start a new file when the current one is this old', perSession: true },
  { name: 'rotate-align', key: 'rotateAlign', kind: 'bool', default: 'false', help: 'end files at every multiple of rotate-seconds since 00:00 UTC, so files of all sessions and appliances cover the same minutes', perSession: true },
  { name: 'rotate-packets', key: 'rotatePackets', kind: 'count', default: '0', help: 'start a new file after this many packets (0 = off)', perSession: true },
  { name: 'dedup', key: 'dedup', kind: 'duration', default: '0', min: 0.001, max: 10, zeroOff: true, help: 'drop a frame whose IP packet (TTL, checksum and MAC addresses aside) was seen within this window, e.g. 2ms: both ends of a conversation mirrored into one session (0 = off)', perSession: true },
  { name: 'ring', key: 'ring', kind: 'count', default: '0', help: 'finished files kept per session, oldest deleted first (0 = keep all)', perSession: true },
  { name: 'snaplen', key: 'snaplen', kind: 'count', default: '65535', min: 64, max: 262144, help: 'bytes of each inner frame written; longer frames are cut (orig_len keeps the real length)', perSession: true },
  { name: 'filter', key: 'filter', kind: 'text', default: '', help: 'pcap-filter (tcpdump) expression on the inner frame; packets that do not match are not written (see docs/filters.md)', perSession: true },
  { name: 'format', key: 'format', kind: 'enum', default: 'pcap', values: ['pcap', 'pcapng'], help: 'file format: pcap (nanosecond classic, X.pcap) or pcapng (X.pcapng: the session as a named interface with its VNI, source and filter, and its received and dropped packets at the end of each file)', perSession: true },
  { name: 'session-key', key: 'sessionKey', kind: 'enum', default: 'vni', values: ['vni', 'vni+src'], help: 'what makes a session: the VNI, or the VNI and the outer source address' },
  { name: 'strict', key: 'strict', kind: 'bool', default: 'false', help: 'drop VNIs not listed in the config file (reason="unknown_vni") instead of creating vni-<n> sessions' },
  { name: 'recv-buffer', liveOnly: true, key: 'recvBuffer', kind: 'size', default: '32MiB', help: 'socket receive buffer to ask the kernel for' },
  { name: 'flush-interval', liveOnly: true, key: 'flushInterval', kind: 'duration', default: '1s', min: 0.01, help: 'buffered records reach the file at least this often' },
  { name: 'queue-size', key: 'queueSize', kind: 'size', default: '32MiB', min: 1024 * 1024, help: 'bytes a session may hold waiting for the disk; beyond it packets drop (reason="queue_full")' },
  { name: 'write-behind', key: 'writeBehind', kind: 'size', default: '8MiB', min: 1024 * 1024, zeroOff: true, help: 'every this many bytes of a file, ask the kernel to write them out now and drop the window before from the page cache (sync_file_range, fadvise), so dirty pages never pile up and stall the writers; needs the native addon' },
  { name: 'max-buffer', key: 'maxBuffer', kind: 'size', default: '128MiB', min: 4 * 1024 * 1024, help: 'bytes all sessions together may hold waiting for the disk' },
  { name: 'max-sessions', key: 'maxSessions', kind: 'count', default: '1024', min: 1, max: 1 << 20, help: 'most sessions at once; packets for more are dropped (reason="session_limit")' },
  { name: 'allow', key: 'allow', kind: 'cidrs', default: '', help: 'outer source addresses allowed to send, CIDR[,CIDR...]; others drop (reason="source_denied") (default: any)' },
  { name: 'max-total-bytes', key: 'maxTotalBytes', kind: 'size', default: '0', min: 1024 * 1024, zeroOff: true, help: 'budget for the finished files of all sessions; the oldest go first' },
  { name: 'min-free-bytes', liveOnly: true, key: 'minFreeBytes', kind: 'size-auto', default: 'auto', help: 'below this much free disk, writing pauses (reason="disk_full") until space returns; auto = 1GiB or 5% of the filesystem, whichever is smaller' },
  { name: 'http-token', liveOnly: true, key: 'httpToken', kind: 'text', default: '', help: 'bearer token required by /api/* (metrics and health stay open)' },
  { name: 'index', key: 'index', kind: 'bool', default: 'true', help: 'write an index sidecar (X.pcap.idx) beside each finished file, so queries read only what can match (compressed files too); --no-index turns it off' },
  { name: 'max-queries', liveOnly: true, key: 'maxQueries', kind: 'count', default: '2', min: 1, max: 64, help: 'queries (/api/query) answered at once; more are refused with 429' },
  { name: 'pcap-over-ip', liveOnly: true, key: 'pcapOverIp', kind: 'endpoint', default: '', help: 'TCP address serving every session live as a microsecond pcap stream (PCAP-over-IP: wireshark -k -i TCP@host:port)' },
  { name: 'max-streams', liveOnly: true, key: 'maxStreams', kind: 'count', default: '8', max: 1024, help: 'live stream clients at once (HTTP and PCAP-over-IP); more are refused (HTTP 503)' },
  { name: 'stream-buffer', liveOnly: true, key: 'streamBuffer', kind: 'size', default: '8MiB', min: 1024 * 1024, max: 1024 * 1024 * 1024, help: 'bytes each stream client may have waiting; when full, its packets drop (mirrorcap_stream_dropped_packets_total)' },
  { name: 'post-rotate', key: 'postRotate', kind: 'text', default: '', help: 'command run for each finished file, with its path as the argument' },
  { name: 'flows', key: 'flows', kind: 'bool', default: 'false', help: 'write VPC Flow Logs records of the inner IP packets under <out>/flows/ (docs/flows.md)', perSession: true },
  { name: 'flow-interval', key: 'flowInterval', kind: 'duration', default: '60', min: 1, help: 'aggregation interval of flow records, whole seconds (AWS: 60 or 600); one file per session and interval' },
  { name: 'flow-format', key: 'flowFormat', kind: 'flow-format', default: '', help: 'flow record fields as AWS names them, e.g. \'${version} ${srcaddr} ${dstaddr} ${tcp-flags}\' (default: the version 2 fields)' },
  { name: 'flow-fields', key: 'flowFields', kind: 'flow-fields', default: '', help: 'values of the fields that describe the mirrored interface, name=value[,name=value...] (account-id, interface-id, vpc-id, region, ..., addresses for flow-direction)', perSession: true },
  { name: 'max-flows', key: 'maxFlows', kind: 'count', default: '1000000', min: 1, help: 'flows all sessions together may hold; new flows beyond it are not counted and their interval says SKIPDATA' },
  { name: 'flow-ring', liveOnly: true, key: 'flowRing', kind: 'count', default: '65536', help: 'newest flow records kept in memory for /api/flows (0 = none)' },
  { name: 'node-name', key: 'nodeName', kind: 'text', default: '', help: 'this appliance\'s name, part of each session\'s flow log id (default: the host name)' },
  { name: 'http-tls-cert', liveOnly: true, key: 'httpTlsCert', kind: 'text', default: '', help: 'PEM certificate (chain) file: serve metrics, health and the API over HTTPS (with --http-tls-key; both re-read on SIGHUP)' },
  { name: 'http-tls-key', liveOnly: true, key: 'httpTlsKey', kind: 'text', default: '', help: 'PEM private key file of --http-tls-cert' },
  { name: 'compress', key: 'compress', kind: 'enum', default: 'none', values: ['none', 'gzip', 'zstd'], help: 'compress each finished file to X.pcap.gz or X.pcap.zst on worker threads, before post-rotate and upload (tshark reads both; tcpdump neither)' },
  { name: 'compress-level', key: 'compressLevel', kind: 'count', default: '0', min: 1, max: 19, zeroOff: true, help: 'compression level: gzip 1-9, zstd 1-19 (0 = gzip 6, zstd 3)' },
  { name: 's3', liveOnly: true, key: 's3', kind: 'text', default: '', help: 'upload every finished file and its sidecars to s3://BUCKET/PREFIX (credentials: the AWS SDK default chain)' },
  { name: 's3-key', liveOnly: true, key: 's3Key', kind: 'text', default: '{prefix}/{host}/{session}/{yyyy}/{mm}/{dd}/{file}', help: 'object key template; also {vni} and {hh}; must hold {host} and {file}' },
  { name: 's3-endpoint', liveOnly: true, key: 's3Endpoint', kind: 'text', default: '', help: 'URL of an S3-compatible store (MinIO, Ceph RGW), addressed path-style (default: AWS)' },
  { name: 's3-region', liveOnly: true, key: 's3Region', kind: 'text', default: '', help: "the bucket's region (default: AWS_REGION or the profile's; us-east-1 with --s3-endpoint)" },
  { name: 's3-sse', liveOnly: true, key: 's3Sse', kind: 'enum', default: 'none', values: ['none', 'AES256', 'aws:kms'], help: "server-side encryption asked for each object (none = the bucket's default)" },
  { name: 's3-kms-key-id', liveOnly: true, key: 's3KmsKeyId', kind: 'text', default: '', help: "KMS key for --s3-sse aws:kms (default: the bucket's or the AWS managed key)" },
  { name: 's3-storage-class', liveOnly: true, key: 's3StorageClass', kind: 'text', default: '', help: "storage class of the objects, e.g. STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR (default: the bucket's)" },
  { name: 's3-concurrency', liveOnly: true, key: 's3Concurrency', kind: 'count', default: '2', min: 1, max: 64, help: 'files uploaded at once' },
  { name: 's3-delete-after-upload', liveOnly: true, key: 's3DeleteAfterUpload', kind: 'bool', default: 'false', help: 'delete each file once it and its sidecars are uploaded: the disk becomes a cache' },
  { name: 's3-host', liveOnly: true, key: 's3Host', kind: 'text', default: '', help: 'the {host} of object keys, unique among the appliances writing to the bucket (default: the host name)' },
  { name: 'log-level', key: 'logLevel', kind: 'enum', default: 'info', values: LOG_LEVELS, help: 'log level of the JSON lines on stdout' },
  { name: 'config', key: 'configFile', kind: 'path', default: '', help: 'YAML or JSON file with any of these options and a sessions list' },
];

const BY_NAME = new Map(OPTIONS.map((o) => [o.name, o]));

/** The Config keys a session may set for itself (the perSession options). */
export const SESSION_SETTING_KEYS: ReadonlyArray<keyof SessionSettings> = OPTIONS.filter((o) => o.perSession).map((o) => o.key as keyof SessionSettings);

/** The per-session settings of a Config or SessionConfig, and nothing else. */
export function sessionSettings(from: SessionSettings): SessionSettings {
  return Object.fromEntries(SESSION_SETTING_KEYS.map((k) => [k, from[k]])) as unknown as SessionSettings;
}

export function envName(option: string): string {
  return `MIRRORCAP_${option.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** Where a raw value came from, for error messages. */
type Origin = string;

interface Raw {
  value: unknown;
  origin: Origin;
}

function fail(what: string, value: unknown, origin: Origin, expected: string): never {
  const shown = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  throw new ConfigError(`invalid ${what} ${shown} (from ${origin}): expected ${expected}`);
}

/**
 * An option's allowed range in words, from its min/max ("at least 4KiB, or 0 for off",
 * "from 64 to 262144"); '' when it has none. Errors, --help and the README table say it.
 */
export function optionLimits(o: OptionSpec): string {
  const fmt = o.kind === 'size' ? formatSize : o.kind === 'duration' ? formatDuration : String;
  const lo = o.min ?? (o.max !== undefined && o.kind === 'count' ? 0 : undefined);
  const range = lo !== undefined && o.max !== undefined ? `from ${fmt(lo)} to ${fmt(o.max)}` : lo !== undefined ? `at least ${fmt(lo)}` : '';
  return range === '' ? '' : range + (o.zeroOff ? ', or 0 for off' : '');
}

function expectation(o: OptionSpec): string {
  const limits = optionLimits(o);
  const range = limits === '' ? '' : limits.startsWith('from') ? ` ${limits}` : ` of ${limits}`;
  switch (o.kind) {
    case 'size':
      return `a size such as 100MiB, 512KiB, 1GiB or a number of bytes${range}`;
    case 'size-auto':
      return 'auto, or a size such as 1GiB, 500MiB or a number of bytes';
    case 'cidrs':
      return 'comma-separated addresses or prefixes such as 10.0.0.0/16,fd00::/8';
    case 'text':
      return 'a string';
    case 'source':
      return 'auto, native, dgram, pcap:<interface> or afpacket:<interface>';
    case 'duration':
      return `a duration such as 300, 30s, 500ms, 5m or 1h${range}`;
    case 'count':
      return `a whole number${range}`;
    case 'bool':
      return 'true or false';
    case 'enum':
      return `one of ${o.values!.join(', ')}`;
    case 'endpoint':
      return 'HOST:PORT with an IP address, e.g. 0.0.0.0:4789 or [::]:4789, port 0-65535';
    case 'endpoints':
      return 'HOST:PORT[,HOST:PORT...] with IP addresses, e.g. 0.0.0.0:4789,0.0.0.0:8472 or [::]:4789, ports 0-65535, no address twice';
    case 'path':
      return 'a path';
    case 'flow-format':
      return 'flow log fields such as ${version} ${srcaddr} ${dstaddr}';
    case 'flow-fields':
      return 'name=value pairs such as account-id=123456789012,region=us-east-1';
  }
}

/**
 * A Gateway Load Balancer endpoint id as 16 lowercase hex digits (what its GENEVE option
 * carries), from up to 16 hex digits or AWS's `vpce-<17 hex>` (the last 16 are taken); null
 * when it is neither.
 */
export function parseEndpointId(text: string): string | null {
  const hex = text.replace(/^vpce-/, '');
  if (!/^[0-9a-fA-F]{1,17}$/.test(hex)) return null;
  return hex.slice(-16).padStart(16, '0').toLowerCase();
}

/** An endpoint as --listen takes it: host:port, [v6]:port. */
export function formatEndpoint(ep: Endpoint): string {
  return isIP(ep.host) === 6 ? `[${ep.host}]:${ep.port}` : `${ep.host}:${ep.port}`;
}

function parseEndpoint(text: string): Endpoint | null {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]*):(\d+)$/.exec(text) ?? /^()(\d+)$/.exec(text);
  if (!m) return null;
  const host = m[1] === '' ? '0.0.0.0' : m[1]!;
  const port = Number(m[2]);
  if (port > 65535) return null;
  if (host !== 'localhost' && isIP(host) === 0) return null;
  if (m[0].startsWith('[') && isIP(host) !== 6) return null;
  return { host, port };
}

function convert(o: OptionSpec, raw: Raw, what = o.name): unknown {
  const { value, origin } = raw;
  const text =
    typeof value === 'string'
      ? value.trim()
      : typeof value === 'number' || typeof value === 'boolean'
        ? String(value)
        : Array.isArray(value) && (o.kind === 'cidrs' || o.kind === 'endpoints') && value.every((v) => typeof v === 'string')
          ? value.join(',')
          : null;
  // A config file gives flow fields as a mapping: checked as it is (YAML numbers and lists kept).
  if (o.kind === 'flow-fields' && typeof value === 'object' && value !== null) {
    return flowValue(() => resolveFlowSessionInfo(value, what), what, origin);
  }
  if (text === null) fail(what, value, origin, expectation(o));
  // An empty value given on purpose is a mistake (a templated token that came out empty
  // would silently open /api), not a way to unset: only the defaults are empty.
  if (text === '' && origin !== 'default' && (o.kind === 'text' || o.kind === 'cidrs')) {
    fail(what, value, origin, o.kind === 'text' ? 'a non-empty string (leave the option out for none)' : 'a non-empty list of addresses or prefixes (leave the option out to allow any source)');
  }
  const inRange = (n: number): boolean =>
    (o.zeroOff === true && n === 0) || ((o.min === undefined || n >= o.min) && (o.max === undefined || n <= o.max));
  switch (o.kind) {
    case 'size': {
      const n = parseSize(text);
      if (!Number.isFinite(n) || !inRange(n)) fail(what, value, origin, expectation(o));
      return n;
    }
    case 'size-auto': {
      if (text === 'auto') return null;
      const n = parseSize(text);
      if (!Number.isFinite(n)) fail(what, value, origin, expectation(o));
      return n;
    }
    case 'cidrs': {
      if (text === '') return Object.freeze([]);
      const list = text.split(',').map((part) => parseCidr(part));
      if (list.some((c) => c === null)) fail(what, value, origin, expectation(o));
      return Object.freeze(list as Cidr[]);
    }
    case 'text':
      return text === '' ? null : text;
    case 'source':
      if (!/^(auto|native|dgram|(pcap|afpacket):[^\s/]{1,64})$/.test(text)) fail(what, value, origin, expectation(o));
      return text;
    case 'duration': {
      const n = parseDuration(text);
      if (!Number.isFinite(n) || !inRange(n)) fail(what, value, origin, expectation(o));
      return n;
    }
    case 'count': {
      const n = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(n) || !inRange(n)) fail(what, value, origin, expectation(o));
      return n;
    }
    case 'bool': {
      const t = text.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(t)) return true;
      if (['false', '0', 'no', 'off'].includes(t)) return false;
      return fail(what, value, origin, expectation(o));
    }
    case 'enum':
      if (!o.values!.includes(text)) fail(what, value, origin, expectation(o));
      return text;
    case 'endpoint': {
      // An endpoint whose default is empty is off until given (pcap-over-ip).
      if (text === '' && origin === 'default') return null;
      const ep = parseEndpoint(text);
      if (!ep) fail(what, value, origin, expectation(o));
      return ep;
    }
    case 'endpoints': {
      const list = text.split(',').map((part) => parseEndpoint(part.trim()));
      if (list.some((ep) => ep === null)) fail(what, value, origin, expectation(o));
      const keys = (list as Endpoint[]).map((ep) => `${ep.host}:${ep.port}`);
      // Port 0 (any free port) may repeat; a fixed address twice could never bind.
      if (keys.some((k, i) => !k.endsWith(':0') && keys.indexOf(k) !== i)) fail(what, value, origin, expectation(o));
      return Object.freeze(list as Endpoint[]);
    }
    case 'path':
      if (text === '' && o.name !== 'config') fail(what, value, origin, 'a non-empty path');
      return text === '' ? null : text;
    case 'flow-format':
      return flowValue(() => parseFlowFormat(text === '' ? DEFAULT_FLOW_FORMAT : text), what, origin);
    case 'flow-fields':
      return flowValue(() => resolveFlowSessionInfo(text === '' ? undefined : Object.fromEntries(text.split(',').map(pair)), what), what, origin);
  }
}

/** `name=value` of a --flow-fields list; a pair without `=` is left for the field check to name. */
function pair(text: string): [string, string] {
  const eq = text.indexOf('=');
  return eq < 0 ? [text.trim(), ''] : [text.slice(0, eq).trim(), text.slice(eq + 1).trim()];
}

/** The flow format's own check, its message said as a config error with where the value came from. */
function flowValue<T>(parse: () => T, what: string, origin: Origin): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof FlowFormatError) throw new ConfigError(`invalid ${what} (from ${origin}): ${err.message}`);
    throw err;
  }
}

/** kebab-case, camelCase and snake_case keys all name the same option in a config file. */
function normalizeKey(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/_/g, '-').toLowerCase();
}

/**
 * Parses argv (after the subcommand) into raw option values. `--name value`, `--name=value`,
 * and for booleans `--name`, `--no-name`, `--name=false`. Positional arguments are returned.
 * A value never starts with "--": `--name --other` says --name lacks its value.
 */
export function parseFlags(
  argv: readonly string[],
  table: readonly OptionSpec[] = OPTIONS,
  command = 'mirrorcap',
): { flags: Map<string, Raw>; positional: string[] } {
  const flags = new Map<string, Raw>();
  const positional: string[] = [];
  const specs = new Map(table.map((o) => [o.name, o] as const));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      if (arg === '--') {
        positional.push(...argv.slice(i + 1));
        break;
      }
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    let name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    let value: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    let spec = specs.get(name);
    if (!spec && name.startsWith('no-') && specs.get(name.slice(3))?.kind === 'bool' && value === undefined) {
      name = name.slice(3);
      spec = specs.get(name);
      value = 'false';
    }
    if (!spec) throw new ConfigError(`unknown option --${name} for ${command} (see ${command} --help)`);
    if (value === undefined) {
      if (spec.kind === 'bool') value = 'true';
      else {
        // `--rotate-size --snaplen 100`: the next flag is not a value (no option takes one
        // starting with "--"; `--name=--value` still passes anything).
        const next = argv[i + 1];
        if (next === undefined || next.startsWith('--')) throw new ConfigError(`option --${name} needs a value: expected ${expectation(spec)}`);
        value = next;
        i++;
      }
    }
    flags.set(name, { value, origin: `--${name}` });
  }
  return { flags, positional };
}

/**
 * yaml, loaded when a YAML config file is read: every command imports this module, and
 * loading yaml is most of the startup of a `mirrorcap query` that reads no config file.
 */
function parseYaml(text: string): unknown {
  return (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(text);
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid ${/\.json$/i.test(path) ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(`config file ${path} must hold a mapping of option names to values`);
  }
  return doc as Record<string, unknown>;
}

const SESSION_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** The folder of flow-log files under --out: no session may be named so. */
export const FLOWS_FOLDER = 'flows';

/** Session names become folder and file names: no separators, no dot-only names, nothing outside --out, not the flows folder. */
export function isValidSessionName(name: string): boolean {
  return SESSION_NAME.test(name) && !/^\.+$/.test(name) && name !== FLOWS_FOLDER;
}

/** The session of a VNI nobody configured (session-key vni), and the start of its names with vni+src. */
export function automaticSessionName(vni: number): string {
  return `vni-${vni}`;
}

/** With session-key vni+src a session's name carries the outer source: <name>-<address>, colons as dashes. */
export function sourcedSessionName(name: string, source: string): string {
  return `${name}-${addrForName(source)}`;
}

/** geneve-<n>[-…] and gwlbe-<id>[-…]: the names automatic GENEVE and GWLB sessions get (session/router.ts). */
const TUNNEL_NAME = /^(geneve|gwlbe)-([0-9a-f]+)(?:-(.*))?$/;
/** vni-<n> and vni-<n>-…: the names automatic sessions of VNI n get. */
const AUTOMATIC_NAME = /^vni-(\d+)(?:-(.*))?$/;
/** Text an address can be after sourcedSessionName (any address form: the test errs on the safe side). */
const isSourceText = (text: string): boolean => isIP(text) === 4 || isIP(text.replace(/-/g, ':')) === 6;
/** Text the first groups of an IPv6 address can be after sourcedSessionName: hex digits and dashes. */
const ADDRESS_START = /^[0-9a-f-]*$/i;

/**
 * A session's name is its folder, its files' names and its metric label, so two keys must never
 * get one name. Names are made three ways: configured, configured + source (a vni+src template),
 * automatic (vni-<n>, vni-<n>-<address>). A configured name that another way could also make for
 * another key is refused here, once, rather than found out when that key's traffic arrives.
 * Returns why `s` clashes, or null.
 */
function nameClash(s: SessionConfig, all: readonly SessionConfig[], sessionKey: SessionKey): string | null {
  const auto = AUTOMATIC_NAME.exec(s.name);
  const autoVni = auto === null ? -1 : Number(auto[1]);
  if (auto !== null && (autoVni !== s.vni || s.encap !== undefined)) {
    return `a name not starting like ${automaticSessionName(autoVni)}, the automatic session name of VNI ${autoVni}`;
  }
  const tunnel = TUNNEL_NAME.exec(s.name);
  if (tunnel !== null) {
    const [, kind, id, rest] = tunnel;
    const own = kind === 'geneve' ? s.encap === 'geneve' && id === String(s.vni) : s.encap === 'gwlbe' && id === s.endpoint;
    // geneve-<n>-ip is GENEVE VNI n carrying IP without an endpoint id: never configured.
    if (!own || rest === 'ip') return `a name not starting like ${kind}-${id}, the automatic session name of ${kind === 'geneve' ? `GENEVE VNI ${id}` : `GWLB endpoint ${id}`}`;
  }
  if (sessionKey !== 'vni+src') return null;
  const templates = all.filter((o) => o.source === null && o !== s);
  if (s.source !== null) {
    // Another template, or the automatic names, plus some source must not make this name.
    const own = addrForName(s.source);
    for (const base of [...templates, ...(auto === null ? [] : [{ name: automaticSessionName(autoVni), vni: autoVni }])]) {
      const rest = s.name.slice(base.name.length + 1);
      if (s.name.startsWith(`${base.name}-`) && isSourceText(rest) && !(base.vni === s.vni && rest === own)) {
        return `a name that "${base.name}" plus a source address cannot make (VNI ${base.vni} from ${isIP(rest) === 4 ? rest : rest.replace(/-/g, ':')} would be named so)`;
      }
    }
    return null;
  }
  // A template: its <name>-<address> must not equal another base's <base>-<address>.
  if (s.name === 'vni' || (auto?.[2] !== undefined && ADDRESS_START.test(auto[2]))) {
    return `a template name that cannot meet the automatic names vni-<n>-<address> once a source address is added`;
  }
  for (const o of templates) {
    if (s.name.startsWith(`${o.name}-`) && ADDRESS_START.test(s.name.slice(o.name.length + 1))) {
      return `a template name that cannot meet "${o.name}" once a source address is added to each (${o.name}-<address> can be ${s.name}-<another address>)`;
    }
  }
  return null;
}

function resolveSessions(list: unknown, origin: Origin, base: SessionSettings, sessionKey: SessionKey): SessionConfig[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) fail('sessions', list, origin, 'a list of {vni, name} entries (or geneve-vni, gwlb-endpoint instead of vni)');
  const seenNames = new Set<string>();
  const seenKeys = new Set<string>();
  const perSession = OPTIONS.filter((o) => o.perSession);
  const sessions = list.map((entry: unknown, i) => {
    const at = `sessions[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      fail(at, entry, origin, 'a mapping such as {vni: 123, name: web-prod}');
    }
    const fields = new Map(Object.entries(entry as Record<string, unknown>).map(([k, v]) => [normalizeKey(k), v]));
    const { vni, encap, endpoint } = sessionMatch(fields, at, origin);
    const name = fields.get('name');
    if (typeof name !== 'string' || !isValidSessionName(name)) {
      fail(`${at}.name`, name, origin, `a name of letters, digits, "-", "_" and "." (not only dots, at most 128, not "${FLOWS_FOLDER}")`);
    }
    if (seenNames.has(name)) fail(`${at}.name`, name, origin, 'a name no other session uses');
    seenNames.add(name);
    let source: string | null = null;
    if (fields.has('source')) {
      const s = fields.get('source');
      if (typeof s !== 'string' || isIP(s) === 0) fail(`${at}.source`, s, origin, 'an IPv4 or IPv6 address');
      if (sessionKey !== 'vni+src') fail(`${at}.source`, s, origin, 'no source unless session-key is vni+src');
      source = canonicalAddr(s);
    }
    const matchKey = MATCH_KEYS.find((k) => fields.has(k))!;
    const key = `${encap ?? 'vxlan'}/${endpoint ?? vni}/${source ?? '*'}`;
    if (seenKeys.has(key)) fail(`${at}.${matchKey}`, fields.get(matchKey), origin, `a ${matchKey}${source ? ' and source' : ''} no other session uses`);
    seenKeys.add(key);
    const overrides: Record<string, unknown> = {};
    for (const [k, v] of fields) {
      if (k === 'name' || k === 'source' || (MATCH_KEYS as readonly string[]).includes(k)) continue;
      const spec = perSession.find((o) => o.name === k);
      if (!spec) {
        throw new ConfigError(
          `unknown key "${k}" in ${at} (from ${origin}); a session takes ${MATCH_KEYS.join(' or ')}, name, source, ${perSession.map((o) => o.name).join(', ')}`,
        );
      }
      const own = convert(spec, { value: v, origin }, `${at}.${k}`);
      // A session's flow fields add to (and override) the top-level ones: account and region once, the interface per session.
      overrides[spec.key!] = spec.kind === 'flow-fields' ? mergeFlowInfo(base.flowFields, own as FlowSessionInfo) : own;
    }
    return Object.freeze({ ...base, ...overrides, vni, name, source, ...(encap === undefined ? {} : { encap }), ...(endpoint === undefined ? {} : { endpoint }) }) as SessionConfig;
  });
  sessions.forEach((s, i) => {
    const clash = nameClash(s, sessions, sessionKey);
    if (clash !== null) fail(`sessions[${i}].name`, s.name, origin, clash);
  });
  return sessions;
}

/** What a session entry matches, one of: a VXLAN VNI, a GENEVE VNI (Ethernet inside), a GWLB endpoint. */
const MATCH_KEYS = ['vni', 'geneve-vni', 'gwlb-endpoint'] as const;

function sessionMatch(fields: ReadonlyMap<string, unknown>, at: string, origin: Origin): Pick<SessionConfig, 'vni' | 'encap' | 'endpoint'> {
  const given = MATCH_KEYS.filter((k) => fields.has(k));
  if (given.length !== 1) {
    fail(at, Object.fromEntries(fields), origin, `one of ${MATCH_KEYS.join(', ')} (a VXLAN VNI, a GENEVE VNI carrying Ethernet, a Gateway Load Balancer endpoint id)`);
  }
  const k = given[0]!;
  const value = fields.get(k);
  if (k === 'gwlb-endpoint') {
    const endpoint = typeof value === 'string' || typeof value === 'number' ? parseEndpointId(String(value)) : null;
    if (endpoint === null) fail(`${at}.${k}`, value, origin, 'an endpoint id: up to 16 hex digits, or vpce-<17 hex digits> (the last 16 are taken)');
    return { vni: 0, encap: 'gwlbe', endpoint };
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_VNI) {
    fail(`${at}.${k}`, value, origin, `an integer from 0 to ${MAX_VNI}`);
  }
  return k === 'vni' ? { vni: value } : { vni: value, encap: 'geneve' };
}

function mergeFlowInfo(base: FlowSessionInfo, own: FlowSessionInfo): FlowSessionInfo {
  if (base === EMPTY_FLOW_INFO) return own;
  return Object.freeze({
    values: Object.freeze({ ...base.values, ...own.values }),
    addresses: own.addresses.length > 0 ? own.addresses : base.addresses,
  });
}

/** Options `mirrorcap decap` takes: everything about sessions, rotation and output. */
export const OFFLINE_OPTIONS: readonly OptionSpec[] = OPTIONS.filter((o) => !o.liveOnly);

/** The value of a command's own option (not part of Config): the flag, else its default. */
export function resolveOption(spec: OptionSpec, flags: Map<string, Raw>): unknown {
  return convert(spec, flags.get(spec.name) ?? { value: spec.default, origin: 'default' });
}

/**
 * Resolves the configuration. `env` is usually process.env; `flags` come from parseFlags;
 * `defaults` overrides some options' defaults for a command (decap logs only warnings).
 * Throws ConfigError (one line naming the key, the value and what is allowed) on any bad value.
 */
export function resolveConfig(flags: Map<string, Raw>, env: NodeJS.ProcessEnv, defaults: Readonly<Record<string, string>> = {}): Config {
  const envRaw = (o: OptionSpec): Raw | undefined => {
    const v = env[envName(o.name)];
    return v === undefined ? undefined : { value: v, origin: envName(o.name) };
  };
  const configSpec = BY_NAME.get('config')!;
  const configRaw = flags.get('config') ?? envRaw(configSpec);
  const configFile = configRaw ? (convert(configSpec, configRaw) as string | null) : null;
  const file: Record<string, unknown> = configFile ? readConfigFile(configFile) : {};
  const fileOrigin = `config file ${configFile}`;
  const fileValues = new Map<string, unknown>();
  let sessionsRaw: unknown;
  for (const [k, v] of Object.entries(file)) {
    const name = normalizeKey(k);
    if (name === 'sessions') sessionsRaw = v;
    else if (BY_NAME.has(name) && name !== 'config') fileValues.set(name, v);
    else throw new ConfigError(`unknown key "${k}" in ${fileOrigin}; known keys: sessions, ${OPTIONS.filter((o) => o.name !== 'config').map((o) => o.name).join(', ')}`);
  }

  const out: Record<string, unknown> = {};
  const raws = new Map<string, Raw>();
  for (const o of OPTIONS) {
    if (o.name === 'config') continue;
    const raw: Raw =
      flags.get(o.name) ??
      envRaw(o) ??
      (fileValues.has(o.name) ? { value: fileValues.get(o.name), origin: fileOrigin } : { value: defaults[o.name] ?? o.default, origin: 'default' });
    raws.set(o.name, raw);
    out[o.key!] = convert(o, raw);
  }
  // Only the interface sources read a BPF filter: with a socket source it would be silently ignored.
  if (out.bpf !== null && !/^(pcap|afpacket):/.test(out.source as string)) {
    const raw = raws.get('bpf')!;
    fail('bpf', raw.value, raw.origin, `no BPF filter unless --source is pcap:<interface> or afpacket:<interface> (it is ${out.source as string})`);
  }
  // Only the native and afpacket sources have a receive path a worker thread can own.
  if ((out.workers as number) > 1 && !/^(auto|native|afpacket:.*)$/.test(out.source as string)) {
    const raw = raws.get('workers')!;
    fail('workers', raw.value, raw.origin, `receive threads need --source native, auto or afpacket:<interface> (it is ${out.source as string})`);
  }
  // The receive threads share one port (SO_REUSEPORT, or a fanout ring filtered to it): one --listen address, no --geneve.
  if ((out.workers as number) > 1 && ((out.listen as Endpoint[]).length > 1 || out.geneve !== null)) {
    const raw = raws.get('workers')!;
    fail('workers', raw.value, raw.origin, 'receive threads take one --listen address and no --geneve (give each its own appliance, or --workers 1)');
  }
  out.configFile = configFile;
  const base = sessionSettings(out as unknown as SessionSettings);
  out.sessions = Object.freeze(resolveSessions(sessionsRaw, fileOrigin, base, out.sessionKey as SessionKey));
  return Object.freeze(out) as unknown as Config;
}

/** `mirrorcap --help`, generated from OPTIONS so it cannot drift. */
export function optionsHelp(specs: readonly OptionSpec[] = OPTIONS): string {
  const rows = specs.map((o) => {
    const flag = o.kind === 'bool' ? `--${o.name}` : `--${o.name} ${o.kind === 'enum' ? o.values!.join('|') : o.kind.toUpperCase()}`;
    const limits = optionLimits(o);
    const notes = [o.default === '' ? '' : `default ${o.default}`, limits].filter((x) => x !== '').join('; ');
    const def = notes === '' ? '' : ` (${notes})`;
    return `  ${flag.padEnd(34)} ${o.help}${def}\n  ${''.padEnd(34)} env ${envName(o.name)}`;
  });
  return rows.join('\n');
}

export type { OptionSpec, Raw };

/** A finite number above zero, for options such as replay's --speed. */
export function positiveNumber(spec: OptionSpec, flags: Map<string, Raw>): number {
  const raw = flags.get(spec.name) ?? { value: spec.default, origin: 'default' };
  const n = Number(raw.value);
  if (!Number.isFinite(n) || n <= 0) fail(spec.name, raw.value, raw.origin, 'a number above 0, such as 1, 2.5 or 0.1');
  return n;
}
