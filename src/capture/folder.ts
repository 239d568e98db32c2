/**
 * Capture folders: `mkdir -p` that always ends. Node's own recursive mkdir retries for ever
 * when mkdir answers ENOENT for a path whose parent exists (`/proc/mc`: procfs refuses new
 * entries that way), so `--out /proc/mc` hung at start with no word. Here each level is made
 * once; an ENOENT that remains once the parent exists is the answer.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

export const DIR_MODE = 0o750;

/** Creates `path` and any missing parents (mode DIR_MODE); fine if it is already a folder. */
export async function makeFolder(path: string): Promise<void> {
  try {
    await mkdir(path, { mode: DIR_MODE });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const parent = dirname(path);
    if (e.code === 'EEXIST') {
      if ((await stat(path)).isDirectory()) return;
      throw e;
    }
    if (e.code !== 'ENOENT' || parent === path) throw e;
    await makeFolder(parent);
    await mkdir(path, { mode: DIR_MODE }).catch(async (again: NodeJS.ErrnoException) => {
      // Another writer made it meanwhile: fine. Anything else (ENOENT again) is final.
      if (again.code !== 'EEXIST' || !(await stat(path)).isDirectory()) throw again;
    });
  }
}
