/**
 * Child process of flowlog.test.ts: counts FLOWS flows in one interval, writes it with the
 * flow-log writer (slowly enough to be killed in the middle) and prints "written <path>".
 * Argument: the flows folder.
 */
import { DEFAULT_FLOW_FORMAT, EMPTY_FLOW_INFO, parseFlowFormat } from '../../src/flowformat.js';
import { SessionFlowLog } from '../../src/capture/flowlog.js';
import { Decoder } from '../../src/decode/packet.js';
import { FlowBudget } from '../../src/session/flows.js';
import { ether, ipv4, udp } from '../lib/frames.js';
import { addAt } from '../lib/flows.js';

const FLOWS = 200_000;
const root = process.argv[2]!;
const log = new SessionFlowLog({
  root,
  session: 'killed',
  node: 'test-node',
  format: parseFlowFormat(DEFAULT_FLOW_FORMAT),
  settings: { flows: true, flowFields: EMPTY_FLOW_INFO },
  intervalSec: 60,
  budget: new FlowBudget(),
  fileClosed: (file) => process.stdout.write(`written ${file.path}\n`),
});
const d = new Decoder();
const frame = ether(0x0800, ipv4(17, udp(1, 53, Buffer.alloc(20)), { src: '10.0.0.1', dst: '10.9.0.1' }));
for (let i = 0; i < FLOWS; i++) {
  frame.writeUInt16BE(i & 0xffff, 34);
  frame[29] = i >>> 16;
  d.decode(frame, 0, frame.length);
  addAt(log.table, d, 1_700_000_000);
}
await log.close(1_700_000_030);
