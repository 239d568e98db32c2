/**
 * The finish step 'index': every finished capture gets its sidecar X.pcap.idx, one file at a
 * time (building reads the whole capture: one at a time keeps that to one core's share, and
 * capture comes first). Files of an earlier run whose sidecar is missing, of another version,
 * stale or with a broken header are indexed at start (`needed`); those recovered from .part
 * files after a crash are among them, and compressed files (X.pcap.gz, .zst) whose sidecar
 * was not rebound by the compress step.
 *
 *   finisher ─run(file)─▶ queue ─▶ buildIndex(file.path) ─▶ X.pcap.idx  (ok / failed / skipped counted)
 */
import type { FinishedFile } from '../capture/catalog.js';
import { isIndexablePath } from '../capture/naming.js';
import { buildIndex, indexProblem, NotIndexable } from './index-build.js';
import type { FinishStep } from './finisher.js';

export interface IndexStepEvents {
  indexed(path: string, packets: number, bytes: number, ms: number): void;
  failed(path: string, why: string): void;
}


export class IndexStep implements FinishStep {
  readonly name = 'index';
  readonly capturesOnly = true;
  /** Sidecars written. */
  built = 0;
  /** Captures that could not be indexed (not classic pcap, unreadable, changed while read). */
  failed = 0;
  /** Bytes of the sidecars written. */
  bytes = 0;
  private tail: Promise<void> = Promise.resolve();
  private deadline = Infinity;

  constructor(private readonly events: IndexStepEvents) {}

  run(file: FinishedFile): Promise<void> {
    const p = this.tail.then(() => this.build(file.path));
    this.tail = p;
    return p;
  }

  async needed(file: FinishedFile): Promise<boolean> {
    return isIndexablePath(file.path) && (await indexProblem(file.path)) !== null;
  }

  /** A build under way gives up at the deadline; the file is indexed again at the next start. */
  async stop(deadline: number): Promise<void> {
    this.deadline = deadline;
    await this.tail;
  }

  private async build(path: string): Promise<void> {
    if (Date.now() >= this.deadline) return;
    const t0 = Date.now();
    try {
      const r = await buildIndex(path, { aborted: () => Date.now() >= this.deadline });
      if (r === null) {
        if (Date.now() < this.deadline) this.fail(path, 'the capture changed while it was indexed');
        return;
      }
      this.built++;
      this.bytes += r.bytes;
      this.events.indexed(path, r.packets, r.bytes, Date.now() - t0);
    } catch (err) {
      this.fail(path, err instanceof NotIndexable ? err.message : `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim());
    }
  }

  private fail(path: string, why: string): void {
    this.failed++;
    this.events.failed(path, why);
  }
}
