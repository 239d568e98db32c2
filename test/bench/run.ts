/**
 * `npm run bench [-- --quick]`: runs every bench section in order. Each section prints its own
 * table with a baseline measured in the same run.
 */
import { run as reader } from './reader.js';

const sections: [string, (opts: { quick: boolean }) => Promise<void>][] = [['capture reader', reader]];

const quick = process.argv.includes('--quick');
for (const [name, section] of sections) {
  console.log(`\n# ${name}${quick ? ' (quick)' : ''}`);
  await section({ quick });
}
