import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { eventLoopDelayGauges, PROM_CLIENT_IDLE_MS } from '../../src/control/event-loop-delay.js';

/** One scrape: every nodejs_eventloop_lag_* gauge, seconds. */
async function lag(register: Registry): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of await register.getMetricsAsJSON()) {
    const name = m.name.match(/^nodejs_eventloop_lag_(\w+)_seconds$/)?.[1];
    if (name !== undefined) out[name] = (m as unknown as { values: { value: number }[] }).values[0]!.value;
  }
  return out;
}

const busy = (ms: number): void => {
  const end = Date.now() + ms;
  while (Date.now() < end);
};

t.test('the delay beyond the sampling interval: an idle loop reads near 0, a blocked one reads the block', async (t) => {
  const register = new Registry();
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: PROM_CLIENT_IDLE_MS });
  eventLoopDelayGauges(register, 20);
  await sleep(300);
  const idle = await lag(register);
  // Uncorrected (prom-client's histogram), an idle loop sampled every 20 ms reads 20 ms at the median.
  t.ok(idle.p50! < 0.01, `idle p50 ${idle.p50} s`);
  t.ok(idle.min! < 0.005, `idle min ${idle.min} s`);
  t.equal(Object.keys(idle).sort().join(' '), 'max mean min p50 p90 p99 stddev', 'every gauge, once');
  await sleep(30);
  busy(250);
  await sleep(60);
  const blocked = await lag(register);
  t.ok(blocked.max! >= 0.2 && blocked.max! < 0.3, `a 250 ms block: max ${blocked.max} s`);
  t.ok(blocked.p50! < 0.01, `the other samples still near 0: p50 ${blocked.p50} s`);
  // Each scrape starts afresh.
  await sleep(100);
  const after = await lag(register);
  t.ok(after.max! < 0.1, `the next scrape's max ${after.max} s`);
});

t.test('a scrape before the first sample reads 0, not the empty histogram', async (t) => {
  const register = new Registry();
  eventLoopDelayGauges(register, 1000);
  const first = await lag(register);
  t.same(Object.values(first), [0, 0, 0, 0, 0, 0, 0]);
});
