/**
 * What happens to a finished file, one step after another, in a fixed order:
 *
 *   writer closes X.pcap ─▶ index ─▶ compress ─▶ post-rotate ─▶ s3 ─▶ free (ring/budget may delete it)
 *
 * Each step runs on the file as the step before left it (compress turns X.pcap into
 * X.pcap.gz, so the upload ships the .gz), and the catalog holds the file busy until its last
 * step has ended: nothing deletes a file before what must happen to it has happened. A step
 * that fails has logged and counted why; the next steps still run (an index that could not be
 * written is no reason to keep a file from S3).
 *
 * Files of an earlier run (found by the catalog's scan) get the steps they still need: a step
 * that can tell from the disk whether it was done (an index sidecar, a compressed twin, an
 * upload marker) says so with `needed`; one that cannot (a --post-rotate command) is never
 * run twice and so never resumed.
 *
 * Flow-log files (X.log.gz, gzip text already) take only the steps that are not for captures
 * alone: post-rotate and s3, not index and compress.
 *
 * At shutdown stop(deadline) waits for every file's steps until the deadline; a file whose
 * next step has not started by then is left with that step not done (reported as skipped for
 * each step, so the next start resumes what can be resumed).
 */
import type { Catalog, FileKind, FinishedFile } from '../capture/catalog.js';

export interface FinishStep {
  /** The catalog's name for it: 'index', 'compress', 'post-rotate', 's3'. */
  readonly name: string;
  /** Does the step on `file` as it is now (file.path). Resolves when it has ended, well or not; never rejects. */
  run(file: FinishedFile): Promise<void>;
  /** For a file of an earlier run: whether this step is still to be done. Absent: never resumed. */
  needed?(file: FinishedFile): Promise<boolean>;
  /** At shutdown, once no new file will come: gives work under way until the deadline (epoch ms). */
  stop?(deadline: number): Promise<void>;
  /** It reads or rewrites packets (index, compress): not for flow-log files. */
  readonly capturesOnly?: boolean;
}

/** Until `p` settles or `deadline` (epoch ms; Infinity: until `p` settles) passes, whichever comes first. */
export async function untilDeadline(p: Promise<unknown>, deadline: number): Promise<void> {
  const settled = p.then(
    () => undefined,
    () => undefined,
  );
  if (!Number.isFinite(deadline)) return settled;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([settled, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
  clearTimeout(timer);
}

export interface FinisherEvents {
  /** `step` was not run on `path` because we were stopping. */
  skipped(path: string, step: string): void;
}

export class Finisher {
  /** Files whose steps are under way, and whether each is inside a step now. */
  private readonly chains = new Map<Promise<void>, { inStep: boolean }>();
  private stopping = false;

  constructor(
    private readonly steps: readonly FinishStep[],
    private readonly catalog: Catalog,
    private readonly events: FinisherEvents,
  ) {}

  /** The names of the steps every new capture file gets, in order. */
  get names(): string[] {
    return this.namesFor('capture');
  }

  /** The names of the steps every new file of this kind gets, in order. */
  namesFor(kind: FileKind): string[] {
    return this.stepsFor(kind).map((s) => s.name);
  }

  /** A file the catalog has just taken in with namesFor(file.kind) pending: runs them in order. */
  add(file: FinishedFile): void {
    this.chain(file, this.stepsFor(file.kind));
  }

  /** Files of an earlier run: each gets the resumable steps it still needs, in order. */
  async resume(files: readonly FinishedFile[]): Promise<void> {
    for (const file of files) {
      const todo: FinishStep[] = [];
      for (const step of this.stepsFor(file.kind)) if (step.needed !== undefined && (await step.needed(file).catch(() => false))) todo.push(step);
      if (todo.length === 0) continue;
      this.catalog.hold(file, todo.map((s) => s.name));
      this.chain(file, todo);
    }
  }

  /** Files whose steps are not all done. */
  get pending(): number {
    return this.chains.size;
  }

  /**
   * No step starts after `deadline` (epoch ms; Infinity = as long as they take). Resolves once
   * each step's own stop() has returned and every file's steps have ended or been skipped,
   * but for steps still running (a post-rotate command goes on by itself).
   */
  async stop(deadline = Infinity): Promise<void> {
    await untilDeadline(Promise.allSettled([...this.chains.keys()]), deadline);
    this.stopping = true;
    for (const step of this.steps) await step.stop?.(deadline);
    // A step that stop() released resolves on a later turn: let its file leave the step first.
    await new Promise((r) => setImmediate(r));
    await Promise.allSettled([...this.chains].filter(([, state]) => !state.inStep).map(([p]) => p));
  }

  private stepsFor(kind: FileKind): readonly FinishStep[] {
    return kind === 'capture' ? this.steps : this.steps.filter((s) => s.capturesOnly !== true);
  }

  private chain(file: FinishedFile, steps: readonly FinishStep[]): void {
    const state = { inStep: false };
    const p = (async () => {
      for (const step of steps) {
        if (this.stopping) this.events.skipped(file.path, step.name);
        else {
          state.inStep = true;
          await step.run(file);
          state.inStep = false;
        }
        await this.catalog.done(file, step.name);
      }
    })();
    this.chains.set(p, state);
    void p.finally(() => this.chains.delete(p));
  }
}
