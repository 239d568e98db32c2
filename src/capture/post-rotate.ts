/**
 * --post-rotate: a command run once for each finished file (compress it, ship it to S3),
 * with the file's path as its only argument, never interpolated into the shell text.
 * At most `concurrency` run at once; the rest wait in a bounded queue. Each file's `done`
 * is called once its command has ended, whatever the result, or was not run.
 */
import { spawn } from 'node:child_process';

export interface PostRotateEvents {
  failed(path: string, why: string): void;
  /** The queue was full: this file's command was not run. */
  skipped(path: string): void;
}

const MAX_QUEUE = 10_000;
const STDERR_TAIL = 500;

export class PostRotate {
  ok = 0;
  failed = 0;
  skipped = 0;
  private running = 0;
  private readonly queue: Array<{ path: string; done: () => void }> = [];
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly command: string,
    private readonly events: PostRotateEvents,
    private readonly concurrency = 2,
  ) {}

  run(path: string, done: () => void): void {
    if (this.queue.length >= MAX_QUEUE) {
      this.skipped++;
      this.events.skipped(path);
      done();
      return;
    }
    this.queue.push({ path, done });
    this.next();
  }

  /** Resolves when nothing is queued or running, or after `ms`; returns whether it was idle. */
  async idle(ms: number): Promise<boolean> {
    if (this.running === 0 && this.queue.length === 0) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private next(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const { path, done: fileDone } = this.queue.shift()!;
      this.running++;
      let stderr = '';
      const child = spawn('/bin/sh', ['-c', `${this.command} "$1"`, 'mirrorcap-post-rotate', path], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_TAIL)));
      let settled = false;
      const done = (why: string | null): void => {
        if (settled) return; // 'error' and 'close' can both come for one child
        settled = true;
        this.running--;
        if (why === null) this.ok++;
        else {
          this.failed++;
          this.events.failed(path, why);
        }
        fileDone();
        this.next();
        if (this.running === 0 && this.queue.length === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
      };
      child.on('error', (err) => done(err.message));
      child.on('close', (code, signal) =>
        done(code === 0 ? null : `exit ${code ?? signal}${stderr ? `: ${stderr.trim()}` : ''}`),
      );
    }
  }
}
