/**
 * `mirrorcap index DIR...`: the sidecar index for every finished capture under DIR (an
 * appliance's --out, one session's folder, or a decap output) that has none, or one that is
 * stale, corrupt or of another version. Files written earlier, or by `mirrorcap decap`, then
 * answer queries through their index too.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { buildIndex, indexChecked, NotIndexable } from '../finish/index-build.js';
import { parseFlags } from '../config.js';
import { orUsageError, usageError } from './common.js';
import { isIndexablePath } from '../capture/naming.js';

export const INDEX_HELP = `Usage: mirrorcap index DIR...

Writes the index sidecar (X.pcap.idx) of every finished capture X.pcap or X.pcapng, plain or
compressed (.gz, .zst), under each DIR (searched to any depth) that has none or whose index is stale,
corrupt or of another version; good indexes are left alone. Open .part files are not
indexed; when both X.pcap and its compressed twin are there, X.pcap is.
Exit status: 0 done, 1 some file could not be indexed, 2 a bad command line.
`;

async function capturesUnder(dir: string, found: string[]): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) await capturesUnder(path, found);
    else if (e.isFile() && isIndexablePath(e.name)) found.push(path);
  }
}

export async function indexCommand(argv: string[]): Promise<number> {
  const { positional } = orUsageError(() => parseFlags(argv, [], 'mirrorcap index'));
  if (positional.length === 0) usageError('index takes one or more folders (see mirrorcap index --help)');
  const files: string[] = [];
  for (const dir of positional) {
    const st = await stat(dir).catch(() => null);
    if (st === null || !st.isDirectory()) usageError(`${dir} is not a folder`);
    await capturesUnder(dir, files);
  }
  let built = 0;
  let good = 0;
  let failed = 0;
  // X.pcap sorts before X.pcap.gz: a twin whose plain capture is still there shares its sidecar.
  const sorted = files.sort().filter((path, i, all) => i === 0 || !path.startsWith(`${all[i - 1]!}.`));
  for (const path of sorted) {
    if ((await indexChecked(path)) === null) {
      good++;
      continue;
    }
    const why = await buildIndex(path).then(
      (r) => (r === null ? 'the capture changed while it was indexed' : null),
      (err: Error) => (err instanceof NotIndexable ? 'not a classic pcap file' : err.message),
    );
    if (why === null) built++;
    else {
      failed++;
      process.stderr.write(`mirrorcap index: ${path}: ${why}\n`);
    }
  }
  process.stdout.write(`mirrorcap index: ${sorted.length} captures: ${built} indexed, ${good} already indexed, ${failed} failed\n`);
  return failed > 0 ? 1 : 0;
}
