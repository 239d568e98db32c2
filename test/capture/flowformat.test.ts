/**
 * The VPC Flow Logs text format: format strings as AWS takes them, the session's static values,
 * and records rendered byte for byte like the examples in AWS's documentation ("Flow log
 * record examples", Amazon VPC User Guide), with `-` where mirrorcap cannot know a value.
 */
import t from 'tap';
import { DEFAULT_FLOW_FORMAT, FLOW_FIELDS, parseFlowFormat, resolveFlowSessionInfo } from '../../src/flowformat.js';
import { FlowRenderer } from '../../src/session/flowrender.js';
import { Decoder } from '../../src/decode/packet.js';
import { FlowBudget, FlowTable, type FlowInterval } from '../../src/session/flows.js';
import { ether, icmp, ipv4, tcp } from '../lib/frames.js';
import { addAt } from '../lib/flows.js';

const V2 = 'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status';

t.test('format strings', async (t) => {
  const def = parseFlowFormat(DEFAULT_FLOW_FORMAT);
  t.equal(def.header, V2, 'the default is the version 2 fields in order');
  t.equal(def.version, 2);
  const custom = parseFlowFormat('${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${account-id} ${type} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} ${protocol} ${bytes} ${packets} ${start} ${end} ${action} ${tcp-flags} ${log-status}');
  t.equal(custom.version, 3, 'the highest version among the fields');
  t.equal(custom.fields.length, 21);
  t.equal(parseFlowFormat('  ${srcaddr}\t${region}  ').version, 4, 'any whitespace between tokens');
  t.equal(parseFlowFormat('${flow-direction}').version, 5);
  t.equal(parseFlowFormat('${ecs-task-id} ${srcaddr}').version, 7);
  t.equal(parseFlowFormat('${reject-reason}').version, 8);
  t.equal(FLOW_FIELDS.length, 40);
  t.throws(() => parseFlowFormat(''), { code: 'ERR_MIRRORCAP_FLOW_FORMAT', message: /empty/ });
  t.throws(() => parseFlowFormat('${srcaddr} ${dstadr}'), { code: 'ERR_MIRRORCAP_FLOW_FORMAT', message: /unknown flow log field "dstadr"; known fields: version account-id/ });
  t.throws(() => parseFlowFormat('${srcaddr} ${srcaddr}'), { message: /"srcaddr" appears twice/ });
  t.throws(() => parseFlowFormat('srcaddr dstaddr'), { message: /token "srcaddr" is not of the form/ });
  t.throws(() => parseFlowFormat('${srcaddr}${dstaddr}'), { message: /not of the form/ });
  t.throws(() => parseFlowFormat('${resource-id}'), { message: /unknown flow log field "resource-id"/ });
});

t.test('session values from the config', async (t) => {
  const info = resolveFlowSessionInfo(
    { 'account-id': 12345678901, 'interface-id': 'eni-1235b8ca123456789', region: 'us-east-1', 'az-id': 'use1-az1', addresses: ['10.0.0.71', '2001:DB8::0:1'] },
    'sessions[0].flow-fields',
  );
  t.same(info.values, { 'account-id': '012345678901', 'interface-id': 'eni-1235b8ca123456789', region: 'us-east-1', 'az-id': 'use1-az1' }, 'a YAML number gets its leading zero back');
  t.same(info.addresses, ['10.0.0.71', '2001:db8::1'], 'addresses in canonical form');
  t.same(resolveFlowSessionInfo({ addresses: '10.0.0.1, 10.0.0.2' }, 'x').addresses, ['10.0.0.1', '10.0.0.2']);
  t.same(resolveFlowSessionInfo(undefined, 'x').values, {});
  const bad: Array<[unknown, RegExp]> = [
    [[], /x must be a mapping/],
    [{ 'account-id': '12345' }, /invalid x.account-id "12345": expected a 12-digit AWS account id/],
    [{ region: 'US East' }, /invalid x.region "US East"/],
    [{ 'vpc-id': 'vpc 1' }, /invalid x.vpc-id "vpc 1": expected printable characters without spaces/],
    [{ 'vpc-id': '' }, /invalid x.vpc-id/],
    [{ 'vpc-id': 7 }, /x.vpc-id must be a string/],
    [{ srcaddr: '10.0.0.1' }, /unknown key "srcaddr" in x; it takes addresses and account-id/],
    [{ addresses: ['nope'] }, /x.addresses must be a list of IP addresses/],
  ];
  for (const [raw, msg] of bad) t.throws(() => resolveFlowSessionInfo(raw, 'x'), { code: 'ERR_MIRRORCAP_FLOW_FORMAT', message: msg });
});

const d = new Decoder();

/** One sealed interval holding the given frames at the given seconds. */
function interval(frames: Array<[Buffer, number]>, intervalSec = 600): FlowInterval {
  let got: FlowInterval | null = null;
  const table = new FlowTable({ intervalSec, budget: new FlowBudget(), sealed: (iv) => (got = iv) });
  for (const [f, sec] of frames) {
    d.decode(f, 0, f.length);
    addAt(table, d, sec);
  }
  table.flush(frames[frames.length - 1]![1] + 1);
  return got!;
}

t.test('records as in AWS examples', async (t) => {
  const info = resolveFlowSessionInfo({ 'account-id': '123456789010', 'interface-id': 'eni-1235b8ca123456789' }, 'x');
  const r = new FlowRenderer(parseFlowFormat(DEFAULT_FLOW_FORMAT), info);
  t.equal(r.header, V2);
  // "SSH traffic ... was allowed": 20 packets, 4249 bytes between 1418530010 and 1418530070.
  const ssh = (payload: number): Buffer =>
    ether(0x0800, ipv4(6, tcp({ sport: 20641, dport: 22, flags: 0x18 }, Buffer.alloc(payload)), { src: '172.31.16.139', dst: '172.31.16.21' }));
  const frames: Array<[Buffer, number]> = [];
  for (let i = 0; i < 19; i++) frames.push([ssh(172), 1418530010 + 3 * i]);
  frames.push([ssh(181), 1418530070]);
  const iv = interval(frames);
  t.equal(r.flow(iv.slots, 0), '2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK');
  // "no data was recorded during the aggregation interval", and the skipped-records example.
  t.equal(r.status('NODATA', 1431280876, 1431280934), '2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA');
  t.equal(new FlowRenderer(parseFlowFormat(DEFAULT_FLOW_FORMAT), resolveFlowSessionInfo({ 'account-id': '123456789010', 'interface-id': 'eni-11111111aaaaaaaaa' }, 'x')).status('SKIPDATA', 1431280876, 1431280934), '2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 1431280934 - SKIPDATA');
  // ICMP: ports 0 ("... 203.0.113.12 172.31.16.139 0 0 1 4 336 ...").
  const ping = ether(0x0800, ipv4(1, icmp(8, 0, 1, Buffer.alloc(56)), { src: '203.0.113.12', dst: '172.31.16.139' }));
  const pings = interval([
    [ping, 1432917027],
    [ping, 1432917060],
    [ping, 1432917100],
    [ping, 1432917142],
  ]);
  t.equal(r.flow(pings.slots, 0), '2 123456789010 eni-1235b8ca123456789 203.0.113.12 172.31.16.139 0 0 1 4 336 1432917027 1432917142 ACCEPT OK');
  const none = new FlowRenderer(parseFlowFormat(DEFAULT_FLOW_FORMAT));
  t.equal(none.flow(pings.slots, 0), '2 - - 203.0.113.12 172.31.16.139 0 0 1 4 336 1432917027 1432917142 ACCEPT OK', 'no config: - for the interface values');
});

t.test('a version 5 custom format: what mirrorcap knows, and - for what it cannot', async (t) => {
  // AWS's example of service name, traffic path and flow direction (an instance calling S3).
  const fmt = parseFlowFormat(
    '${version} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${start} ${end} ${type} ${packets} ${bytes} ${account-id} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${region} ${az-id} ${sublocation-type} ${sublocation-id} ${action} ${tcp-flags} ${pkt-srcaddr} ${pkt-dstaddr} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${traffic-path} ${flow-direction} ${log-status}',
  );
  const info = resolveFlowSessionInfo(
    {
      'account-id': '123456789012',
      'vpc-id': 'vpc-abcdefab012345678',
      'subnet-id': 'subnet-aaaaaaaa012345678',
      'instance-id': 'i-0c50d5961bcb2d47b',
      'interface-id': 'eni-1235b8ca123456789',
      region: 'ap-southeast-2',
      'az-id': 'apse2-az3',
      addresses: ['10.0.0.71'],
    },
    'x',
  );
  const r = new FlowRenderer(fmt, info);
  const seg = (src: string, dst: string, sport: number, dport: number, flags: number, payload: number): Buffer =>
    ether(0x0800, ipv4(6, tcp({ sport, dport, flags }, Buffer.alloc(payload)), { src, dst }));
  const frames: Array<[Buffer, number]> = [
    [seg('52.95.128.179', '10.0.0.71', 80, 34210, 0x12, 0), 1616729292],
    [seg('10.0.0.71', '52.95.128.179', 34210, 80, 0x02, 0), 1616729292],
    [seg('52.95.128.179', '10.0.0.71', 80, 34210, 0x11, 0), 1616729349],
    [seg('10.0.0.71', '52.95.128.179', 34210, 80, 0x11, 0), 1616729349],
  ];
  const iv = interval(frames);
  t.equal(
    r.flow(iv.slots, 0),
    '5 52.95.128.179 10.0.0.71 80 34210 6 1616729292 1616729349 IPv4 2 80 123456789012 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-0c50d5961bcb2d47b eni-1235b8ca123456789 ap-southeast-2 apse2-az3 - - ACCEPT 19 52.95.128.179 10.0.0.71 - - - ingress OK',
  );
  t.equal(
    r.flow(iv.slots, 1),
    '5 10.0.0.71 52.95.128.179 34210 80 6 1616729292 1616729349 IPv4 2 80 123456789012 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-0c50d5961bcb2d47b eni-1235b8ca123456789 ap-southeast-2 apse2-az3 - - ACCEPT 3 10.0.0.71 52.95.128.179 - - - egress OK',
  );
  t.equal(r.status('NODATA', 1616729280, 1616729340), '5 - - - - - 1616729280 1616729340 - - - 123456789012 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-0c50d5961bcb2d47b eni-1235b8ca123456789 ap-southeast-2 apse2-az3 - - - - - - - - - - NODATA');
  const rec = r.record('web', iv.slots, 0);
  t.match(rec, { session: 'web', srcaddr: '52.95.128.179', dstport: 34210, 'tcp-flags': 19, 'flow-direction': 'ingress', start: 1616729292, end: 1616729349, 'vpc-id': 'vpc-abcdefab012345678' });
  t.notOk('pkt-src-aws-service' in rec, 'unknown values are left out of the JSON view');
  t.same(r.statusRecord('web', 'NODATA', 1, 2), { session: 'web', ...info.values, start: 1, end: 2, 'log-status': 'NODATA' });
});
