/**
 * The Dockerfile against reality, without a Docker engine: the ports, folders and health
 * check it names are the appliance's own defaults and routes, its build stage runs the
 * README's commands, and those steps, replayed on a fresh clone of the committed tree
 * (context filtered by .dockerignore, each stage a folder), give an appliance that starts,
 * is ready, writes into the volume and stops cleanly on SIGTERM.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { OPTIONS } from '../../src/config.js';
import { httpGet, launchAppliance, metricValue, sendDatagrams, waitFor } from '../lib/appliance.js';
import { all, aptPackages, dockerignore, envOf, execForm, parseDockerfile, replayStage, workdir, type Stage } from '../lib/dockerfile.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { freePort } from '../lib/ports.js';
import { capinfos } from '../lib/tshark.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const dockerfileText = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
const deployDoc = await readFile(join(ROOT, 'docs/deploy.md'), 'utf8');
const stages = parseDockerfile(dockerfileText);
const build = stages[0]!;
const runtime = stages.at(-1)!;

const option = (name: string): string => OPTIONS.find((o) => o.name === name)!.default;
const portOf = (endpoint: string): number => Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
const single = (stage: Stage, op: string): string => {
  const found = all(stage, op);
  if (found.length !== 1) throw new Error(`expected one ${op} in the ${stage.name ?? 'final'} stage, found ${found.length}`);
  return found[0]!.args;
};
/** `a && b` → [a, b]: the commands of one RUN step. */
const commands = (stage: Stage): string[] => all(stage, 'RUN').flatMap((s) => s.args.split(/\s*&&\s*/));
/** The base image's Node.js prefix, which its ENV may name (npm_config_nodedir). */
const IMAGE_NODE_PREFIX = '/usr/local';

t.test('two stages on the same slim Node 22 LTS (bookworm) image, so the addon matches the runtime ABI', async (t) => {
  t.equal(stages.length, 2);
  t.equal(build.name, 'build');
  for (const s of stages) t.match(s.image, /^node:22-bookworm-slim$/, `${s.name ?? 'runtime'} stage runs node:22-bookworm-slim`);
});

t.test('EXPOSE names the default UDP and HTTP ports', async (t) => {
  t.same(single(runtime, 'EXPOSE').split(/\s+/).sort(), [`${portOf(option('listen'))}/udp`, `${portOf(option('http'))}/tcp`].sort());
});

t.test('the volume is where the default --out lands, owned by the user the image runs as', async (t) => {
  const volume = single(runtime, 'VOLUME');
  t.equal(posix.resolve(workdir(runtime), option('out')), volume, `WORKDIR + ${option('out')} is the VOLUME`);
  t.notOk('MIRRORCAP_OUT' in envOf(runtime), 'no MIRRORCAP_OUT to keep in step');
  const user = single(runtime, 'USER');
  t.notMatch(user, /^(root|0)(:|$)/, 'not root');
  const prepare = all(runtime, 'RUN').find((s) => s.args.includes('chown'));
  t.ok(prepare, 'the volume folder is prepared');
  const [mkdirCmd, chownCmd] = (prepare?.args ?? '').split(/\s*&&\s*/);
  const made = mkdirCmd!.replace(/^mkdir (-p )?/, '');
  t.equal(posix.resolve(workdir(runtime), made), volume, 'the folder made is the volume');
  t.equal(chownCmd, `chown ${user}:${user} ${made}`, `and it belongs to ${user}`);
});

t.test('SIGTERM stops it, and the health check asks /healthz on the default HTTP port', async (t) => {
  t.equal(single(runtime, 'STOPSIGNAL'), 'SIGTERM');
  const hc = all(runtime, 'HEALTHCHECK')[0]!;
  t.ok(hc, 'has a HEALTHCHECK');
  const argv = execForm(hc.args.replace(/^CMD\s+/, ''));
  t.equal(argv[0], 'node', 'node itself does the GET (no curl in slim images)');
  t.match(argv.join(' '), "path:'/healthz'");
  t.match(argv.join(' '), `'${option('http')}'`, `falls back to the default ${option('http')}`);
  t.match(await readFile(join(ROOT, 'src/control/http.ts'), 'utf8'), "['/healthz',", 'the route exists');
  const entry = [...execForm(single(runtime, 'ENTRYPOINT')), ...execForm(single(runtime, 'CMD'))];
  t.same(entry.slice(0, 1), ['node']);
  t.equal(entry.at(-1), 'run', 'CMD runs the appliance; flags given to docker run replace it');
});

t.test('build stage: a toolchain and libpcap headers, then the README commands; runtime: libpcap only', async (t) => {
  const buildPkgs = aptPackages(build);
  for (const p of ['python3', 'make', 'g++', 'libpcap-dev']) t.ok(buildPkgs.includes(p), `build stage installs ${p}`);
  t.same(aptPackages(runtime), ['libpcap0.8'], 'runtime stage installs libpcap0.8 only');

  const quickStart = /## Quick start\s+```sh\n([^\n]+)/.exec(readme)?.[1];
  const npm = commands(build).filter((c) => c.startsWith('npm '));
  t.equal(npm[0], quickStart, `the first npm command is the quick start's install (${quickStart})`);
  const dockerSection = /\n## Docker\n([\s\S]*?)\n## /.exec(deployDoc)?.[1] ?? '';
  for (const c of npm) t.ok(dockerSection.includes(`\`${c}\``), `docs/deploy.md's Docker section shows \`${c}\``);
  for (const c of commands(build).filter((c) => !c.startsWith('npm '))) {
    t.notMatch(c, /(^|\s)\/(?!var\/lib\/apt)/, `"${c}" touches nothing but the build folder (so it replays here)`);
  }
});

t.test('.dockerignore keeps the context small and keeps what the build needs', async (t) => {
  const ignored = dockerignore(await readFile(join(ROOT, '.dockerignore'), 'utf8'));
  for (const p of ['.git/HEAD', 'node_modules/pino/package.json', 'dist/src/main.js', 'native/build/Release/x.node', 'captures/a/a.pcap', 'test/e2e/x.ts', 'x/y.pcap']) {
    t.ok(ignored(p), `${p} stays out`);
  }
  for (const p of ['package.json', 'package-lock.json', 'tsconfig.json', 'src/main.ts', 'src/source/batch.ts', 'native/binding.gyp', 'native/build.mjs']) {
    t.notOk(ignored(p), `${p} goes in`);
  }
});

const top = spawnSync('git', ['-C', ROOT, 'rev-parse', '--show-toplevel'], { encoding: 'utf8' });
const notGit = top.status === 0 ? false : `not a git checkout: ${top.stderr.trim() || top.error?.message}`;

t.test('replayed on a fresh clone: npm ci, prune, start from the image layout, ready, healthy, SIGTERM exits 0', { skip: notGit }, async (t) => {
  t.setTimeout(240_000);
  const work = await mkdtemp(join(tmpdir(), 'mirrorcap-image-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const timings: string[] = [];
  const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const r = await f();
    timings.push(`${what} ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return r;
  };

  const clone = join(work, 'clone');
  await timed('git clone', async () => execFileSync('git', ['clone', '--quiet', top.stdout.trim(), clone], { stdio: 'pipe' }));
  if (!existsSync(join(clone, 'Dockerfile'))) return t.fail('HEAD has no Dockerfile: the replay tests what is committed');
  const committed = await readFile(join(clone, 'Dockerfile'), 'utf8');
  if (committed !== dockerfileText) t.comment('the working copy of the Dockerfile differs from HEAD: replaying the committed one');
  const [cBuild, cRuntime] = [parseDockerfile(committed)[0]!, parseDockerfile(committed).at(-1)!];

  const context = join(work, 'context');
  const ignored = dockerignore(await readFile(join(clone, '.dockerignore'), 'utf8'));
  const tracked = execFileSync('git', ['-C', clone, 'ls-files', '-z'], { encoding: 'utf8' }).split('\0').filter((f) => f !== '');
  for (const f of tracked.filter((f) => !ignored(f))) {
    await mkdir(dirname(join(context, f)), { recursive: true });
    await cp(join(clone, f), join(context, f));
  }

  // The programs RUN steps use come from this machine, never from the test run around us:
  // npm's lifecycle variables (npm_config_local_prefix, ...) would point npm at our own tree.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|INIT_CWD$)/i.test(k)));
  env.PATH = (env.PATH ?? '').split(':').filter((d) => !d.includes('node_modules')).join(':');
  env.npm_config_prefer_offline = 'true';
  env.npm_config_audit = 'false';
  env.npm_config_fund = 'false';
  const localPrefix = dirname(dirname(process.execPath));
  const mapEnv = (_key: string, value: string): string | undefined =>
    value !== IMAGE_NODE_PREFIX ? value : existsSync(join(localPrefix, 'include/node/node.h')) ? localPrefix : undefined;

  const buildRoot = join(work, 'build-root');
  const ran = await timed('build stage', () =>
    replayStage(cBuild, { root: buildRoot, context, stages: new Map(), env, runs: (c) => !c.includes('apt-get'), mapEnv }),
  );
  for (const r of ran) timings.push(`  RUN ${r.command.slice(0, 60)} ${(r.ms / 1000).toFixed(1)} s`);
  t.same(
    ran.map((r) => r.command.split(/\s*&&\s*/)[0]).filter((c) => c.startsWith('npm ')),
    commands(cBuild).filter((c) => c.startsWith('npm ')),
    'every npm command of the build stage ran and succeeded',
  );
  const app = join(buildRoot, workdir(cBuild));
  t.ok(existsSync(join(app, 'dist/src/main.js')), 'npm ci compiled the TypeScript');
  // Every package the lockfile marks dev-only is gone. (@types/node is "devOptional": the
  // optional zstd-napi binding lists it as a dependency, so a production install keeps it.)
  const lock = JSON.parse(await readFile(join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const devOnly = Object.entries(lock.packages).filter(([path, p]) => p.dev === true && path.startsWith('node_modules/')).map(([path]) => path);
  t.ok(devOnly.includes('node_modules/typescript') && devOnly.includes('node_modules/tap'), 'the lockfile marks typescript and tap dev-only');
  t.same(devOnly.filter((path) => existsSync(join(app, path))), [], `all ${devOnly.length} dev-only packages pruned`);
  for (const dep of ['pino', 'prom-client', 'yaml', '@aws-sdk/client-s3', '@aws-sdk/lib-storage']) t.ok(existsSync(join(app, 'node_modules', dep, 'package.json')), `${dep} kept`);
  t.ok(existsSync(join(app, 'node_modules/zstd-napi/build/Release/binding.node')), 'the zstd binding was built (Node < 22.15 needs it for --compress zstd)');
  if (existsSync(join(app, 'native/binding.gyp'))) t.ok(existsSync(join(app, 'native/build/Release/mirrorcap_native.node')), 'the native addon was built');

  const runRoot = join(work, 'runtime-root');
  await timed('runtime stage', () =>
    replayStage(cRuntime, { root: runRoot, context, stages: new Map([['build', buildRoot]]), env, runs: () => false, mapEnv }),
  );
  const inImage = (p: string): string => join(runRoot, p);
  const argv = [...execForm(single(cRuntime, 'ENTRYPOINT')), ...execForm(single(cRuntime, 'CMD'))].map((a, i) =>
    i === 0 && a === 'node' ? process.execPath : a.startsWith('/') && existsSync(inImage(a)) ? inImage(a) : a,
  );
  if (existsSync(join(app, 'native/binding.gyp'))) {
    // dist/src/native/addon.js loads ../../../native/build/Release/*.node: the image's app folder.
    const addon = join(dirname(argv[1]!), '../../native/build/Release/mirrorcap_native.node');
    t.ok(existsSync(addon), 'the image has the addon where the loader looks');
    t.equal(spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addon)})`]).status, 0, 'and it loads');
  }
  const httpPort = await freePort();
  const runEnv = { ...env, ...envOf(cRuntime), MIRRORCAP_LISTEN: '127.0.0.1:0', MIRRORCAP_HTTP: `127.0.0.1:${httpPort}`, MIRRORCAP_LOG_LEVEL: 'info' };
  const appliance = await timed('start', () => launchAppliance(argv, { env: runEnv, cwd: inImage(workdir(cRuntime)) }));
  t.teardown(() => appliance.proc.kill('SIGKILL'));
  t.equal(appliance.httpPort, httpPort);
  if (existsSync(join(app, 'native/binding.gyp'))) {
    t.equal(appliance.logs.find((l) => l.event === 'start')?.source, 'native', 'with the addon in place, it receives through it');
  }

  t.equal((await httpGet(httpPort, '/readyz')).status, 200, '/readyz answers 200');
  const healthArgv = execForm(all(cRuntime, 'HEALTHCHECK')[0]!.args.replace(/^CMD\s+/, ''));
  const health = (): number | null => spawnSync(process.execPath, healthArgv.slice(1), { env: runEnv, timeout: 10_000 }).status;
  t.equal(health(), 0, 'the HEALTHCHECK command passes');

  await sendDatagrams(appliance.udpPort, [vxlan(42, udpFrame(128, 42, 1))]);
  await waitFor(async () => metricValue((await httpGet(httpPort, '/metrics')).body, 'mirrorcap_written_packets_total', { vni: '42' }) === 1, 5000, 'the packet written');
  t.equal(await appliance.stop('SIGTERM'), 0, 'SIGTERM exits 0');
  t.not(health(), 0, 'the HEALTHCHECK command fails once it is gone');

  const sessionDir = inImage(posix.join(single(cRuntime, 'VOLUME'), 'vni-42'));
  // The capture and its index sidecar (X.pcap.idx).
  const files = (await readdir(sessionDir)).filter((f) => f.endsWith('.pcap'));
  t.equal(files.length, 1, 'one finished file, in the volume');
  t.match(files[0], /^vni-42-\d{8}T\d{6}Z-000000\.pcap$/);
  t.equal((await capinfos(join(sessionDir, files[0]!))).packets, 1, 'capinfos reads it: one packet');
  t.comment(`timings: ${timings.join(', ')}`);
});
