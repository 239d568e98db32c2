import { spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, OPTIONS, envName, parseFlags, resolveConfig, type Config } from '../src/config.js';
import { parseDuration, parseSize } from '../src/units.js';
import { MAIN } from './lib/appliance.js';

const resolve = (argv: string[], env: NodeJS.ProcessEnv = {}): Config => resolveConfig(parseFlags(argv).flags, env);

async function file(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-config-'));
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

t.test('sizes and durations', async (t) => {
  t.equal(parseSize('100MiB'), 100 * 1024 * 1024);
  t.equal(parseSize('512KiB'), 512 * 1024);
  t.equal(parseSize('1GiB'), 1024 ** 3);
  t.equal(parseSize('1.5 GiB'), 1.5 * 1024 ** 3);
  t.equal(parseSize('10MB'), 10_000_000);
  t.equal(parseSize('4096'), 4096);
  t.ok(Number.isNaN(parseSize('12XB')));
  t.ok(Number.isNaN(parseSize('-1MiB')));
  t.equal(parseDuration('300'), 300);
  t.equal(parseDuration('500ms'), 0.5);
  t.equal(parseDuration('5m'), 300);
  t.equal(parseDuration('1h'), 3600);
  t.ok(Number.isNaN(parseDuration('soon')));
});

t.test('defaults: work with no configuration at all', async (t) => {
  const c = resolve([]);
  t.same(c.listen, [{ host: '0.0.0.0', port: 4789 }]);
  t.same(c.http, { host: '0.0.0.0', port: 9789 });
  t.equal(c.out, './captures');
  t.equal(c.rotateSize, 100 * 1024 * 1024);
  t.equal(c.rotateSeconds, 300);
  t.equal(c.rotatePackets, 0);
  t.equal(c.ring, 0);
  t.equal(c.snaplen, 65535);
  t.equal(c.sessionKey, 'vni');
  t.equal(c.strict, false);
  t.equal(c.recvBuffer, 32 * 1024 * 1024);
  t.equal(c.flushInterval, 1);
  t.equal(c.logLevel, 'info');
  t.same(c.sessions, []);
  t.ok(Object.isFrozen(c), 'the config is frozen');
});

t.test('flags > environment > file > defaults', async (t) => {
  const path = await file('c.yaml', 'rotate-size: 1GiB\nring: 3\nsnaplen: 200\nout: /from/file\n');
  const env = { MIRRORCAP_RING: '5', MIRRORCAP_SNAPLEN: '300', MIRRORCAP_CONFIG: path };
  const c = resolve(['--snaplen', '400'], env);
  t.equal(c.rotateSize, 1024 ** 3, 'file beats default');
  t.equal(c.ring, 5, 'env beats file');
  t.equal(c.snaplen, 400, 'flag beats env');
  t.equal(c.out, '/from/file');
  t.equal(c.rotateSeconds, 300, 'default where nobody says');
  t.equal(resolve(['--config', path], {}).ring, 3, '--config names the file too');
});

t.test('--listen takes a list of VXLAN addresses: flag, environment, config file string or list', async (t) => {
  const two = [{ host: '0.0.0.0', port: 4789 }, { host: '::', port: 8472 }];
  t.same(resolve(['--listen', '0.0.0.0:4789, [::]:8472']).listen, two, 'flag, spaces allowed');
  t.same(resolve([], { MIRRORCAP_LISTEN: '0.0.0.0:4789,[::]:8472' }).listen, two, 'environment');
  t.same(resolve(['--config', await file('l.yaml', 'listen: [0.0.0.0:4789, "[::]:8472"]\n')]).listen, two, 'YAML list');
  t.same(resolve(['--config', await file('l.json', '{"listen": "0.0.0.0:4789,[::]:8472"}')]).listen, two, 'JSON string');
  t.throws(() => resolve(['--config', '/dev/null'], { MIRRORCAP_LISTEN: '0.0.0.0:4789,0.0.0.0:x' }), /invalid listen "0.0.0.0:4789,0.0.0.0:x" \(from MIRRORCAP_LISTEN\)/);
});

t.test('flag forms: --k v, --k=v, booleans, [v6]:port', async (t) => {
  t.equal(resolve(['--strict']).strict, true);
  t.equal(resolve(['--strict=false']).strict, false);
  t.equal(resolve(['--no-strict'], { MIRRORCAP_STRICT: 'true' }).strict, false);
  t.equal(resolve([], { MIRRORCAP_STRICT: 'yes' }).strict, true);
  t.same(resolve(['--listen=[::]:4790']).listen, [{ host: '::', port: 4790 }]);
  t.same(resolve(['--listen', '127.0.0.1:0']).listen, [{ host: '127.0.0.1', port: 0 }]);
  t.equal(resolve(['--rotate-seconds', '1h']).rotateSeconds, 3600);
  t.equal(resolve(['--rotate-size', '0']).rotateSize, 0, '0 turns size rotation off');
  t.equal(resolve(['--session-key', 'vni+src']).sessionKey, 'vni+src');
});

t.test('JSON config files, camelCase and snake_case keys', async (t) => {
  const path = await file('c.json', JSON.stringify({ rotateSize: '2MiB', rotate_packets: 7, sessions: [{ vni: 9, name: 'x', rotateSize: '8MiB' }] }));
  const c = resolve(['--config', path]);
  t.equal(c.rotateSize, 2 * 1024 * 1024);
  t.equal(c.rotatePackets, 7);
  t.equal(c.sessions[0]!.rotateSize, 8 * 1024 * 1024, 'a session overrides rotation');
  t.equal(c.sessions[0]!.rotatePackets, 7, 'and inherits the rest');
});

t.test('sessions from the config file', async (t) => {
  const path = await file('c.yaml', 'snaplen: 1000\nsessions:\n  - { vni: 123, name: web-prod, snaplen: 256, ring: 4 }\n  - vni: 7\n    name: db.primary\n');
  const c = resolve(['--config', path]);
  t.same(c.sessions.map((s) => [s.vni, s.name, s.snaplen, s.ring, s.source]), [[123, 'web-prod', 256, 4, null], [7, 'db.primary', 1000, 0, null]]);
  const src = await file('s.yaml', 'session-key: vni+src\nsessions:\n  - { vni: 1, name: a, source: 10.0.0.5 }\n  - { vni: 1, name: b }\n');
  t.same(resolve(['--config', src]).sessions.map((s) => s.source), ['10.0.0.5', null]);
});

/** Every bad value: ConfigError, one line, naming the key, the value and what is allowed. */
const BAD_FLAGS: Array<[string[], RegExp]> = [
  [['--rotate-size', '12XB'], /invalid rotate-size "12XB" \(from --rotate-size\): expected a size/],
  [['--rotate-size', '100'], /invalid rotate-size "100".*at least 4KiB, or 0 for off/],
  [['--rotate-seconds', 'soon'], /invalid rotate-seconds "soon".*expected a duration/],
  [['--rotate-packets', '-1'], /invalid rotate-packets "-1".*whole number/],
  [['--ring', '2.5'], /invalid ring "2.5".*whole number/],
  [['--snaplen', '10'], /invalid snaplen "10".*from 64 to 262144/],
  [['--snaplen', '300000'], /invalid snaplen "300000"/],
  [['--session-key', 'src'], /invalid session-key "src".*one of vni, vni\+src/],
  [['--strict=maybe'], /invalid strict "maybe".*true or false/],
  [['--listen', '4789:0.0.0.0'], /invalid listen "4789:0.0.0.0".*HOST:PORT/],
  [['--listen', 'example.com:4789'], /invalid listen "example.com:4789"/],
  [['--listen', '0.0.0.0:70000'], /invalid listen "0.0.0.0:70000"/],
  [['--listen', '0.0.0.0:4789,'], /invalid listen "0.0.0.0:4789,".*HOST:PORT\[,HOST:PORT\.\.\.\]/],
  [['--listen', '0.0.0.0:4789,0.0.0.0:4789'], /invalid listen "0.0.0.0:4789,0.0.0.0:4789".*no address twice/],
  [['--http', '[::1]'], /invalid http "\[::1\]"/],
  [['--recv-buffer', 'lots'], /invalid recv-buffer "lots"/],
  [['--flush-interval', '0'], /invalid flush-interval "0".*at least 10ms/],
  [['--queue-size', '1KiB'], /invalid queue-size "1KiB".*at least 1MiB/],
  [['--max-sessions', '0'], /invalid max-sessions "0"/],
  [['--log-level', 'loud'], /invalid log-level "loud".*one of fatal, error, warn, info, debug, trace, silent/],
  [['--out', ''], /invalid out "".*non-empty path/],
  [['--bogus', '1'], /unknown option --bogus/],
  [['--snaplen'], /option --snaplen needs a value/],
];

t.test('every bad flag value is a one-line ConfigError naming key, value, allowed', async (t) => {
  for (const [argv, re] of BAD_FLAGS) {
    t.throws(() => resolve(argv), { name: 'ConfigError', code: 'ERR_MIRRORCAP_CONFIG', message: re }, argv.join(' '));
  }
});

t.test('a flag that takes a value never swallows the next flag', async (t) => {
  // Every kind of option that takes a value: a following --x is the next flag, not a value.
  for (const o of OPTIONS.filter((o) => o.kind !== 'bool')) {
    t.throws(() => parseFlags([`--${o.name}`, '--snaplen', '100']), { name: 'ConfigError', message: new RegExp(`^option --${o.name} needs a value: expected `) }, `--${o.name} --snaplen 100`);
    t.throws(() => parseFlags([`--${o.name}`, '--strict']), { message: new RegExp(`^option --${o.name} needs a value`) }, `--${o.name} --strict`);
  }
  // A value that starts with one dash is a value, and no option takes a negative number.
  t.throws(() => resolve(['--ring', '-1']), { message: /invalid ring "-1".*whole number/ });
  t.throws(() => resolve(['--rotate-size', '-4KiB']), { message: /invalid rotate-size "-4KiB"/ });
  t.throws(() => resolve(['--flush-interval', '-1s']), { message: /invalid flush-interval "-1s"/ });
  t.throws(() => resolve(['--min-free-bytes', '-1']), { message: /invalid min-free-bytes "-1"/ });
  t.equal(resolve(['--post-rotate=--help']).postRotate, '--help', '--name=value still takes anything');
  const cli = spawnSync(process.execPath, [MAIN, '--rotate-size', '--snaplen', '100'], { encoding: 'utf8' });
  t.equal(cli.status, 2);
  t.equal(cli.stderr, `mirrorcap: option --rotate-size needs a value: expected a size such as 100MiB, 512KiB, 1GiB or a number of bytes of at least 4KiB, or 0 for off\n`);
  // The commands' own options too.
  const replay = spawnSync(process.execPath, [MAIN, 'replay', 'pcaps/ipv4.pcap', '--vni', '--flat-out'], { encoding: 'utf8' });
  t.equal(replay.status, 2);
  t.match(replay.stderr, /^mirrorcap: option --vni needs a value: expected a whole number/);
  const decap = spawnSync(process.execPath, [MAIN, 'decap', 'pcaps/ipv4.pcap', '--port', '--out', 'x'], { encoding: 'utf8' });
  t.equal(decap.status, 2);
  t.match(decap.stderr, /^mirrorcap: option --port needs a value/);
});

t.test('--bpf only with the interface source: elsewhere it would be ignored', async (t) => {
  t.equal(resolve(['--source', 'pcap:eth0', '--bpf', 'udp port 4790']).bpf, 'udp port 4790');
  t.equal(resolve(['--source', 'pcap:eth0']).bpf, null);
  t.equal(resolve(['--source', 'afpacket:eth0', '--bpf', 'udp port 4790']).bpf, 'udp port 4790');
  for (const source of ['auto', 'native', 'dgram']) {
    t.throws(() => resolve(['--source', source, '--bpf', 'udp']), { name: 'ConfigError', message: `invalid bpf "udp" (from --bpf): expected no BPF filter unless --source is pcap:<interface> or afpacket:<interface> (it is ${source})` }, `--source ${source} --bpf udp`);
  }
  t.throws(() => resolve([], { MIRRORCAP_BPF: 'udp' }), { message: /^invalid bpf "udp" \(from MIRRORCAP_BPF\): expected no BPF filter unless --source is pcap:<interface> or afpacket:<interface> \(it is auto\)$/ });
  const path = await file('bpf.yaml', 'source: dgram\nbpf: udp\n');
  t.throws(() => resolve(['--config', path]), { message: /^invalid bpf "udp" \(from config file .*bpf.yaml\)/ });
  const cli = spawnSync(process.execPath, [MAIN, '--bpf', 'udp', '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0'], { encoding: 'utf8', timeout: 10_000 });
  t.equal(cli.status, 2, 'exit status 2');
  t.match(cli.stderr, /^mirrorcap: invalid bpf "udp" \(from --bpf\)/);
});

t.test('--workers: a socket source other than native refused; more than one takes one --listen address and no --geneve', async (t) => {
  t.equal(resolve(['--workers', '2']).workers, 2);
  t.equal(resolve(['--workers', '4', '--source', 'afpacket:eth0']).workers, 4);
  t.throws(() => resolve(['--workers', '2', '--source', 'dgram']), { message: /^invalid workers "2" \(from --workers\): expected receive threads need --source native, auto or afpacket:<interface> \(it is dgram\)$/ });
  const oneAddress = /^invalid workers "2" \(from --workers\): expected receive threads take one --listen address and no --geneve/;
  t.throws(() => resolve(['--workers', '2', '--listen', '0.0.0.0:4789,0.0.0.0:8472']), { message: oneAddress }, 'two --listen addresses');
  t.throws(() => resolve(['--workers', '2', '--geneve', '0.0.0.0:6081']), { message: oneAddress }, 'with --geneve');
  t.equal(resolve(['--workers', '1', '--listen', '0.0.0.0:4789,0.0.0.0:8472', '--geneve', '0.0.0.0:6081']).workers, 1, 'one worker takes any listeners');
});

t.test('bad environment values name the variable', async (t) => {
  t.throws(() => resolve([], { MIRRORCAP_RING: 'many' }), { message: /invalid ring "many" \(from MIRRORCAP_RING\)/ });
  t.throws(() => resolve([], { MIRRORCAP_LISTEN: 'x' }), { message: /\(from MIRRORCAP_LISTEN\)/ });
});

t.test('an empty value given on purpose is an error, not "unset" (an empty token would open /api)', async (t) => {
  for (const name of ['http-token', 'post-rotate', 'bpf', 'allow']) {
    const expected = new RegExp(`^invalid ${name} "" \\(from --${name}\\): expected a non-empty`);
    t.throws(() => resolve([`--${name}`, '']), { name: 'ConfigError', message: expected }, `--${name} ""`);
    t.throws(() => resolve([`--${name}=`]), { message: expected }, `--${name}=`);
    t.throws(() => resolve([], { [envName(name)]: '' }), { message: new RegExp(`^invalid ${name} "" \\(from ${envName(name)}\\)`) }, `${envName(name)}=`);
    t.throws(() => resolve([], { [envName(name)]: '  ' }), { message: new RegExp(`^invalid ${name} "  "`) }, `${envName(name)}="  "`);
  }
  const path = await file('t.yaml', 'http-token: ""\n');
  t.throws(() => resolve(['--config', path]), { message: /^invalid http-token "" \(from config file .*t.yaml\)/ });
  const c = resolve([]);
  t.equal(c.httpToken, null, 'not given: no token');
  t.equal(c.postRotate, null);
  t.same(c.allow, [], 'not given: any source');
  const cli = spawnSync(process.execPath, [MAIN, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0'], { encoding: 'utf8', timeout: 10_000, env: { ...process.env, MIRRORCAP_HTTP_TOKEN: '' } });
  t.equal(cli.status, 2, 'an empty MIRRORCAP_HTTP_TOKEN stops the appliance with exit status 2');
  t.match(cli.stderr, /^mirrorcap: invalid http-token "" \(from MIRRORCAP_HTTP_TOKEN\)/);
});

t.test('bad config files', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['a.yaml', 'ring: [1\n', /is not valid YAML/],
    ['b.json', '{"ring": ', /is not valid JSON/],
    ['c.yaml', '- 1\n- 2\n', /must hold a mapping/],
    ['d.yaml', 'rotate_sise: 1MiB\n', /unknown key "rotate_sise".*known keys: sessions, listen/],
    ['e.yaml', 'snaplen: lots\n', /invalid snaplen "lots" \(from config file .*e.yaml\)/],
    ['f.yaml', 'sessions: { vni: 1 }\n', /invalid sessions .*a list/],
    ['g.yaml', 'sessions:\n  - { vni: 16777216, name: a }\n', /invalid sessions\[0\]\.vni 16777216.*0 to 16777215/],
    ['h.yaml', 'sessions:\n  - { vni: "1", name: a }\n', /invalid sessions\[0\]\.vni "1"/],
    ['i.yaml', 'sessions:\n  - { vni: 1, name: ../etc }\n', /invalid sessions\[0\]\.name "..\/etc"/],
    ['j.yaml', 'sessions:\n  - { vni: 1, name: a/b }\n', /invalid sessions\[0\]\.name "a\/b"/],
    ['k.yaml', 'sessions:\n  - { vni: 1, name: ".." }\n', /invalid sessions\[0\]\.name "\.\."/],
    ['l.yaml', 'sessions:\n  - { vni: 1, name: a }\n  - { vni: 2, name: a }\n', /sessions\[1\]\.name "a".*no other session uses/],
    ['m.yaml', 'sessions:\n  - { vni: 1, name: a }\n  - { vni: 1, name: b }\n', /sessions\[1\]\.vni 1.*no other session uses/],
    ['n.yaml', 'sessions:\n  - { vni: 1, name: a, source: 10.0.0.1 }\n', /sessions\[0\]\.source.*no source unless session-key is vni\+src/],
    ['o.yaml', 'sessions:\n  - { vni: 1, name: a, colour: red }\n', /unknown key "colour" in sessions\[0\]/],
    ['p.yaml', 'sessions:\n  - { vni: 1, name: a, snaplen: 1 }\n', /invalid sessions\[0\]\.snaplen 1/],
    ['q.yaml', 'sessions:\n  - { vni: 1 }\n', /invalid sessions\[0\]\.name undefined|invalid sessions\[0\]\.name/],
  ];
  for (const [name, text, re] of cases) {
    const path = await file(name, text);
    t.throws(() => resolve(['--config', path]), { name: 'ConfigError', message: re }, `${name}: ${text.trim()}`);
  }
  t.throws(() => resolve(['--config', '/nonexistent/mirrorcap.yaml']), { message: /cannot read config file \/nonexistent\/mirrorcap.yaml/ });
  t.ok(new ConfigError('x') instanceof Error);
});

t.test('the CLI: bad value exits 2 with one line on stderr; --help documents every option', async (t) => {
  const bad = spawnSync(process.execPath, [MAIN, '--rotate-size', '12XB'], { encoding: 'utf8' });
  t.equal(bad.status, 2, 'exit status 2');
  t.equal(bad.stderr.trim().split('\n').length, 1, 'one line');
  t.match(bad.stderr, /rotate-size "12XB".*expected a size/);
  const env = spawnSync(process.execPath, [MAIN], { encoding: 'utf8', env: { ...process.env, MIRRORCAP_SNAPLEN: 'big' } });
  t.equal(env.status, 2);
  t.match(env.stderr, /MIRRORCAP_SNAPLEN/);
  t.equal(spawnSync(process.execPath, [MAIN, 'frobnicate'], { encoding: 'utf8' }).status, 2, 'unknown command exits 2');
  const help = spawnSync(process.execPath, [MAIN, '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0);
  for (const o of OPTIONS) {
    t.match(help.stdout, `--${o.name}`, `--help names --${o.name}`);
    t.match(help.stdout, envName(o.name), `--help names ${envName(o.name)}`);
  }
});
