/**
 * --post-rotate: a command run once for each finished file (compress it, ship it to S3),
 * with the file's path as its only argument, never interpolated into the shell text.
 * At most `concurrency` run at once; the rest wait in a bounded queue. Each file's `done`
 * is called once its command has ended, whatever the result, or was not run.
 *
 * At shutdown finish(deadline) waits for the queue to empty and the commands to end; what
 * has not started by the deadline is not run: each such file is reported skipped
 * (reason "shutdown") and counted. Commands still running are left to end by themselves.
 */
import { spawn } from 'node:child_process';
import type { FinishedFile } from '../capture/catalog.js';
import type { FinishStep } from './finisher.js';

/** Why a file's command was not run: the queue was full, or it had not started when we stopped. */
export type SkipReason = 'queue_full' | 'shutdown';

export interface PostRotateEvents {
  failed(path: string, why: string): void;
  /** This file's command was not run. */
  skipped(path: string, reason: SkipReason): void;
  /** At shutdown: this file's command is still running and goes on by itself. */
  stillRunning(path: string): void;
}

const MAX_QUEUE = 10_000;
const STDERR_TAIL = 500;

export class PostRotate implements FinishStep {
  readonly name = 'post-rotate';
  ok = 0;
  failed = 0;
  skipped = 0;
  /** Files whose command is running. */
  private readonly running = new Set<string>();
  private readonly queue: Array<{ path: string; done: () => void }> = [];
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly command: string,
    private readonly events: PostRotateEvents,
    private readonly concurrency = 2,
  ) {}

  /** A finished file's command (never resumed for files of an earlier run: it may not be idempotent). */
  run(file: FinishedFile): Promise<void> {
    return new Promise((done) => this.enqueue(file.path, done));
  }

  async stop(deadline: number): Promise<void> {
    for (const path of await this.finish(deadline)) this.events.stillRunning(path);
  }

  enqueue(path: string, done: () => void): void {
    if (this.queue.length >= MAX_QUEUE) {
      this.skip(path, done, 'queue_full');
      return;
    }
    this.queue.push({ path, done });
    this.next();
  }

  /**
   * Waits until nothing is queued or running, or until `deadline` (epoch ms; Infinity = no
   * limit). Then files still queued are skipped (reason "shutdown"). Returns the files whose
   * command is still running.
   */
  async finish(deadline: number): Promise<string[]> {
    if (this.running.size > 0 || this.queue.length > 0) {
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(deadline) ? setTimeout(resolve, Math.max(0, deadline - Date.now())) : null;
        this.idleWaiters.push(() => {
          if (timer !== null) clearTimeout(timer);
          resolve();
        });
      });
    }
    for (const { path, done } of this.queue.splice(0)) this.skip(path, done, 'shutdown');
    return [...this.running];
  }

  /** Files whose command is running now. */
  get runningCount(): number {
    return this.running.size;
  }

  private skip(path: string, done: () => void, reason: SkipReason): void {
    this.skipped++;
    this.events.skipped(path, reason);
    done();
  }

  private next(): void {
    while (this.running.size < this.concurrency && this.queue.length > 0) {
      const { path, done: fileDone } = this.queue.shift()!;
      this.running.add(path);
      let stderr = '';
      const child = spawn('/bin/sh', ['-c', `${this.command} "$1"`, 'mirrorcap-post-rotate', path], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_TAIL)));
      let settled = false;
      const done = (why: string | null): void => {
        if (settled) return; // 'error' and 'close' can both come for one child
        settled = true;
        this.running.delete(path);
        if (why === null) this.ok++;
        else {
          this.failed++;
          this.events.failed(path, why);
        }
        fileDone();
        this.next();
        if (this.running.size === 0 && this.queue.length === 0) {
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
