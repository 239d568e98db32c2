/**
 * nodejs_eventloop_lag_{min,max,mean,stddev,p50,p90,p99}_seconds, sampled every SAMPLE_MS and
 * reported as the delay beyond it. prom-client samples with a timer every 10 ms by default: 100
 * wake-ups a second of an otherwise idle appliance, each costing tens of µs on a VM (0.6 % of a
 * core idle, ~130 ns per packet at 50k packets/s). Its histogram (node's monitorEventLoopDelay)
 * records the time between two samples, the interval included: at 10 ms that reads as 10 ms of
 * lag on an idle process, at 100 ms as 100 ms. Here the interval is taken off, so the gauges
 * say how late the loop was, and an alert on them means what it says.
 *
 *   timer every SAMPLE_MS ─▶ histogram (ns between samples) ─scrape─▶ value − SAMPLE_MS (≥ 0) ─▶ gauges, reset
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/** How often the event loop's delay is sampled; every 100 ms still catches any stall that matters to capture. */
export const SAMPLE_MS = 100;

/**
 * prom-client's own histogram is given this interval (about 24 days) so that it never samples:
 * collectDefaultMetrics cannot leave it out, and its gauges are replaced by these.
 */
export const PROM_CLIENT_IDLE_MS = 2 ** 31 - 1;

const STATS = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'] as const;
type Stat = (typeof STATS)[number];

const HELP: Record<Stat, string> = {
  min: 'The smallest event loop delay since the last scrape (beyond the 100 ms sampling interval).',
  max: 'The largest event loop delay since the last scrape (beyond the 100 ms sampling interval).',
  mean: 'The mean event loop delay since the last scrape (beyond the 100 ms sampling interval).',
  stddev: 'The standard deviation of the event loop delays since the last scrape.',
  p50: 'The median event loop delay since the last scrape (beyond the 100 ms sampling interval).',
  p90: 'The 90th percentile of the event loop delays since the last scrape (beyond the 100 ms sampling interval).',
  p99: 'The 99th percentile of the event loop delays since the last scrape (beyond the 100 ms sampling interval).',
};

/** Replaces prom-client's event-loop delay gauges in `register` with ones that report the delay beyond the sampling interval. */
export function eventLoopDelayGauges(register: Registry, sampleMs = SAMPLE_MS): void {
  const histogram = monitorEventLoopDelay({ resolution: sampleMs });
  histogram.enable();
  const interval = sampleMs * 1e6;
  const late = (ns: number): number => Math.max(0, ns - interval) / 1e9;
  const read: Record<Stat, () => number> = {
    min: () => late(histogram.min),
    max: () => late(histogram.max),
    mean: () => late(histogram.mean),
    stddev: () => histogram.stddev / 1e9,
    p50: () => late(histogram.percentile(50)),
    p90: () => late(histogram.percentile(90)),
    p99: () => late(histogram.percentile(99)),
  };
  // The values of one scrape all come from one histogram state: the first gauge read takes them
  // all and resets it (prom-client collects the gauges of a registry one after another).
  let taken: Record<Stat, number> | null = null;
  const take = (stat: Stat): number => {
    if (taken === null) {
      // No sample yet (a scrape within the first interval): nothing was late.
      const sampled = histogram.count > 0;
      taken = Object.fromEntries(STATS.map((s) => [s, sampled ? read[s]() : 0])) as Record<Stat, number>;
      histogram.reset();
      setImmediate(() => (taken = null));
    }
    return taken[stat];
  };
  for (const stat of STATS) {
    const name = `nodejs_eventloop_lag_${stat}_seconds`;
    register.removeSingleMetric(name);
    new Gauge({
      name,
      help: HELP[stat],
      registers: [register],
      collect() {
        this.set(take(stat));
      },
    });
  }
}
