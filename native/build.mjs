// Builds the native addon; package.json's "install" script runs it during `npm ci`.
// The addon only makes receiving faster: without it mirrorcap falls back to the dgram
// source. So a failed build prints one line, keeps node-gyp's output in native/build.log
// (the loader points there) and exits 0: it never fails the install.
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const log = join(here, 'build.log');

// npm names its bundled node-gyp; outside npm, take whichever is on PATH.
const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const run = spawnSync(cmd, args, { cwd: here, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

if (run.status === 0) {
  rmSync(log, { force: true });
} else {
  const output = `${run.error ? String(run.error) : ''}${run.stdout ?? ''}${run.stderr ?? ''}`;
  writeFileSync(log, output);
  // The first line that names a cause: a compiler error, gyp's own complaint, node-gyp's error.
  const cause = /^.*\berror: .*$|^gyp: .*$|^gyp ERR! stack Error: .*$/m.exec(output)?.[0];
  const why = (run.error?.message ?? cause ?? `node-gyp exited with ${run.status}`).trim().slice(0, 200);
  console.error(`mirrorcap: native addon not built (${why}); the dgram source will be used, see native/build.log`);
}
