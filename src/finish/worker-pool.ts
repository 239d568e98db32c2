/**
 * A small bounded pool of worker threads for the finish steps' heavy work (compression,
 * encoding index sidecars): threads start when a job comes, at most `threads` of them, one job
 * per thread at a time, the rest queued; a thread at work keeps the process alive, an idle one
 * does not (unref'd).
 *
 *   run(job, transfer) ──queue──▶ idle thread (or a new one) ──postMessage({ ...job, id })──▶ script
 *        ▲                                                                                     │
 *        └──────────────────── resolves its reply { id, ... } ◀────────────────────────────────┘
 *
 * A thread that cannot start or dies (out of memory, a crash in a binding) rejects its job with
 * a WorkerPoolError 'thread' and is replaced at the next job; close(grace) rejects the queued
 * jobs ('closed'), gives the running ones `grace` ms, then terminates the threads (their jobs
 * rejected 'closed', `running` set). The script answers each job with one message carrying its id.
 */
import { Worker, type Transferable } from 'node:worker_threads';

export interface PoolMessage {
  readonly id: number;
}

/** Why a job got no reply: the pool was closed (before or while it ran), or its thread failed. */
export class WorkerPoolError extends Error {
  override readonly name = 'WorkerPoolError';
  constructor(
    readonly reason: 'closed' | 'thread',
    /** The job had been handed to a thread (its transferred memory went with it). */
    readonly running: boolean,
    message: string,
  ) {
    super(message);
  }
}

interface Pending<J, R> {
  readonly job: J;
  readonly transfer: readonly Transferable[];
  resolve(r: R): void;
  reject(e: Error): void;
}

interface Slot<J, R> {
  readonly worker: Worker;
  running: Pending<J, R> | null;
}

export class WorkerPool<J extends PoolMessage, R extends PoolMessage> {
  private readonly queue: Pending<J, R>[] = [];
  private readonly slots: Slot<J, R>[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly script: URL,
    private readonly threads: number,
    /** What the thread does, for error messages ('compression', 'index encoding'). */
    private readonly what: string,
  ) {}

  /** Threads started (at most `threads`). */
  get started(): number {
    return this.slots.length;
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.queue.length + this.slots.filter((s) => s.running !== null).length;
  }

  /** Runs `job` (its id is the pool's) on a thread; `transfer` moves memory to it. */
  run(job: Omit<J, 'id'>, transfer: readonly Transferable[] = []): Promise<R> {
    if (this.closed) return Promise.reject(new WorkerPoolError('closed', false, `${this.what} threads closed`));
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { ...job, id: this.nextId++ } as J, transfer, resolve, reject });
      this.dispatch();
    });
  }

  /** Stops: queued jobs rejected at once, running ones given `graceMs`, then the threads terminated. Idempotent. */
  async close(graceMs = 0): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(new WorkerPoolError('closed', false, `${this.what} threads closed before this job ran`));
    const deadline = Date.now() + graceMs;
    while (this.slots.some((s) => s.running !== null) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await Promise.all(
      this.slots.splice(0).map(async (s) => {
        s.running?.reject(new WorkerPoolError('closed', true, `${this.what} threads closed while this job ran`));
        s.running = null;
        await s.worker.terminate();
      }),
    );
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.running === null);
      if (slot === undefined) {
        if (this.slots.length >= this.threads) return;
        try {
          slot = this.spawn();
        } catch (err) {
          this.queue.shift()!.reject(new WorkerPoolError('thread', false, `${this.what} thread could not start: ${(err as Error).message}`));
          continue;
        }
      }
      const p = this.queue.shift()!;
      slot.running = p;
      // A thread at work keeps the process alive (its caller awaits it); an idle one does not.
      slot.worker.ref();
      try {
        slot.worker.postMessage(p.job, p.transfer);
      } catch (err) {
        slot.running = null;
        slot.worker.unref();
        p.reject(new WorkerPoolError('thread', false, `${this.what} job could not be handed over: ${(err as Error).message}`));
      }
    }
  }

  private spawn(): Slot<J, R> {
    const worker = new Worker(this.script);
    const slot: Slot<J, R> = { worker, running: null };
    worker.unref();
    worker.on('message', (reply: R) => {
      const p = slot.running;
      if (p === null || p.job.id !== reply.id) return;
      slot.running = null;
      worker.unref();
      p.resolve(reply);
      this.dispatch();
    });
    // A thread that dies fails its job, not the process.
    worker.on('error', (err) => this.lost(slot, err));
    worker.on('exit', (code) => {
      if (!this.closed) this.lost(slot, new Error(`${this.what} thread exited with code ${code}`));
    });
    this.slots.push(slot);
    return slot;
  }

  private lost(slot: Slot<J, R>, err: Error): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    void slot.worker.terminate();
    slot.running?.reject(new WorkerPoolError('thread', true, err.message));
    slot.running = null;
    this.dispatch();
  }
}
