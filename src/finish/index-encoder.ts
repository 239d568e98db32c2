/**
 * Encodes index sidecars on one worker thread (index-worker.ts, run by a WorkerPool of one),
 * started with the first file, unref'd while idle, terminated at close(): the index step's way
 * to keep the sort and encoding of a big file's sidecar (100-400 ms for 64 MiB of 50,000 flows)
 * off the event loop, which meanwhile receives the datagrams. One thread is enough: the step
 * indexes one file at a time.
 *
 * A small sidecar is encoded on the loop: under THREAD_FROM entries (key log entries and groups:
 * a file of about 2 MiB of many flows, or 16 MiB of a few) it takes 1-2 ms, so a process that
 * writes only small files (low traffic, tests) never starts the thread. Below that the thread
 * costs more CPU than it saves the loop: it is handed a few files a second, too few for V8 to
 * optimise its code as the loop's is (there, 1.5 ms a sidecar of 16 MiB of one flow; on the
 * thread 2-10 ms, measured in the appliance).
 *
 *   encode(builder) ──parts (transferred, not copied)──▶ index thread ──bytes and the parts' memory (transferred back)──▶ resolves
 *     │ small ──▶ encoded on the loop
 *     │ the thread could not start or died (counted, told):
 *     │   the builder's memory still here ──▶ encoded on the loop
 *     │   gone with the thread            ──▶ rejects EncodeLost: the caller reads the capture back
 *     │ after GIVE_UP such failures in a row the thread is given up: every later file is encoded on the loop
 *     └ closed (stop) ──▶ rejects EncodeClosed: no sidecar is written; the next start indexes the file
 */
import type { IndexBuilder } from './index-build.js';
import { transferOf } from './index-encode.js';
import { indexMemory } from './index-memory.js';
import type { EncodeJob, EncodeReply } from './index-worker.js';
import { WorkerPool, WorkerPoolError } from './worker-pool.js';

/** Thread failures in a row after which the thread is not tried again. */
const GIVE_UP = 3;
/** Entries (key log entries, flows as six, and groups) from which a sidecar is encoded on the thread: 1-2 ms of work on the loop here. */
export const THREAD_FROM = 1 << 15;

/** The thread died with the builder's memory: the sidecar can only be made by reading the capture back. */
export class EncodeLost extends Error {
  readonly code = 'ERR_MIRRORCAP_INDEX_THREAD_LOST';
  override readonly name = 'EncodeLost';
}

/** The encoder was closed (stopping) before the sidecar was encoded. */
export class EncodeClosed extends Error {
  readonly code = 'ERR_MIRRORCAP_INDEX_CLOSED';
  override readonly name = 'EncodeClosed';
}

export interface IndexEncoderEvents {
  /** The thread failed a file (`why`); `givenUp`: from now on every file is encoded on the loop. */
  threadFailed(why: string, givenUp: boolean): void;
}

export interface IndexEncoderOptions {
  /** Entries from which a sidecar goes to the thread (default THREAD_FROM; 0: every one). */
  readonly threadFrom?: number;
  /** The thread's module (a test gives one that fails). */
  readonly script?: URL;
}

export class IndexEncoder {
  /** Sidecars encoded on the thread, and on the loop (small ones, and those the thread failed). */
  readonly encoded = { thread: 0, loop: 0 };
  /** Files the thread did not encode because it could not start or died. */
  threadFailures = 0;
  private failuresInARow = 0;
  private readonly threadFrom: number;
  private readonly pool: WorkerPool<EncodeJob, EncodeReply>;

  constructor(
    private readonly events: IndexEncoderEvents,
    options: IndexEncoderOptions = {},
  ) {
    this.threadFrom = options.threadFrom ?? THREAD_FROM;
    this.pool = new WorkerPool(options.script ?? new URL('./index-worker.js', import.meta.url), 1, 'index encoding');
  }

  /** Whether files are still sent to the thread (false once it was given up). */
  get threaded(): boolean {
    return this.failuresInARow < GIVE_UP;
  }

  /** The sidecar of the capture `builder` saw, as it is now (size, mtime); the builder is spent afterwards. */
  readonly encode = async (builder: IndexBuilder, captureSize: number, captureMtimeMs: number): Promise<Buffer> => {
    if (!this.threaded || builder.entries < this.threadFrom) return this.onLoop(builder, captureSize, captureMtimeMs);
    const parts = builder.parts();
    let reply: EncodeReply;
    try {
      reply = await this.pool.run({ parts, captureSize, captureMtimeMs }, transferOf(parts));
    } catch (err) {
      if (!(err instanceof WorkerPoolError)) throw err;
      if (err.reason === 'closed') throw new EncodeClosed(err.message);
      this.threadFailures++;
      this.failuresInARow++;
      this.events.threadFailed(err.message, !this.threaded);
      if (builder.spent) throw new EncodeLost(err.message);
      return this.onLoop(builder, captureSize, captureMtimeMs);
    }
    this.failuresInARow = 0;
    if (!reply.ok) throw Object.assign(new Error(reply.message), { code: reply.code });
    this.encoded.thread++;
    // Both came here whole (transferred): this thread's indexMemory takes the builder's memory now, the bytes' once written.
    for (const b of reply.returned) {
      indexMemory.claim(b);
      indexMemory.give(b);
    }
    indexMemory.claim(reply.body.buffer as ArrayBuffer);
    return Buffer.from(reply.body.buffer, reply.body.byteOffset, reply.body.byteLength);
  };

  /** The sidecar encoded on the event loop, counted. */
  readonly onLoop = (builder: IndexBuilder, captureSize: number, captureMtimeMs: number): Buffer => {
    this.encoded.loop++;
    return builder.encode(captureSize, captureMtimeMs);
  };

  /** Terminates the thread: an encoding under way is abandoned (EncodeClosed). Idempotent. */
  close(): Promise<void> {
    return this.pool.close();
  }
}
