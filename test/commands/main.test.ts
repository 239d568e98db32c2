/** The command line as a user types it: every subcommand, its help, and what is not one. */
import { execFile } from 'node:child_process';
import t from 'tap';
import { MAIN } from '../lib/appliance.js';

// Without tap's --import hooks in NODE_OPTIONS: they triple the start-up time of each of these short runs.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS'));
const cli = (args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000, env }, (err, stdout, stderr) =>
      resolve({ status: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr }),
    );
  });
/** Runs the command lines three at a time (they are independent); answers in the order given. */
async function all(cases: string[][]): Promise<Array<Awaited<ReturnType<typeof cli>>>> {
  const answers: Array<Awaited<ReturnType<typeof cli>>> = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const k = next++;
      answers[k] = await cli(cases[k]!);
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  return answers;
}

t.test('help: general, and per command; an unknown topic exits 2', async (t) => {
  const general = [['help'], ['--help'], ['-h']];
  for (const [k, r] of (await all(general)).entries()) {
    t.equal(r.status, 0, general[k]!.join(' '));
    t.match(r.stdout, /Commands:[\s\S]*mirrorcap interfaces[\s\S]*Options:/, `${general[k]!.join(' ')} prints the general help`);
  }
  const usage: Array<[string, RegExp]> = [
    ['run', /^Usage: mirrorcap \[run\]/],
    ['decap', /^Usage: mirrorcap decap <capture>/],
    ['replay', /^Usage: mirrorcap replay <capture>/],
    ['interfaces', /^Usage: mirrorcap interfaces\n[\s\S]*--source pcap:<iface>/],
    ['version', /^Usage: mirrorcap version\n/],
    ['help', /^Usage: mirrorcap help \[command\]\n/],
  ];
  const asked = usage.flatMap(([command, re]) => [['help', command], [command, '--help']].map((args) => [args, re] as const));
  for (const [k, r] of (await all(asked.map(([args]) => args))).entries()) {
    const [args, re] = asked[k]!;
    t.equal(r.status, 0, `${args.join(' ')} exits 0`);
    t.match(r.stdout, re, `${args.join(' ')} prints its command's help`);
  }
  const bad = [['help', 'bogus'], ['--help', 'bogus'], ['help', 'run', 'extra'], ['help', '--bogus']];
  const answers = await all(bad);
  for (const [k, r] of answers.entries()) {
    t.equal(r.status, 2, `${bad[k]!.join(' ')} exits 2`);
    t.equal(r.stdout, '', `${bad[k]!.join(' ')} prints no help`);
    t.equal(r.stderr.split('\n').length, 2, `${bad[k]!.join(' ')}: one line on stderr`);
  }
  t.equal(answers[0]!.stderr, 'mirrorcap: unknown command "bogus" (see mirrorcap --help)\n');
});

t.test('unknown commands, arguments and options exit 2 with one line, for every command', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['bogus'], /unknown command "bogus"/],
    [['--bogus'], /unknown option --bogus for mirrorcap run/],
    [['run', '--bogus'], /unknown option --bogus for mirrorcap run/],
    [['run', 'extra'], /unexpected argument "extra"/],
    [['decap', 'pcaps/ipv4.pcap', '--bogus'], /unknown option --bogus for mirrorcap decap/],
    [['replay', 'pcaps/ipv4.pcap', '--bogus'], /unknown option --bogus for mirrorcap replay/],
    [['interfaces', 'extra'], /interfaces takes no arguments, got "extra"/],
    [['interfaces', '--bogus'], /unknown option --bogus for mirrorcap interfaces/],
    [['interfaces', 'extra', '--bogus'], /unknown option --bogus for mirrorcap interfaces/],
    [['version', 'extra'], /version takes no arguments, got "extra"/],
    [['version', '--bogus'], /unknown option --bogus for mirrorcap version/],
  ];
  for (const [k, r] of (await all(cases.map(([args]) => args))).entries()) {
    const [args, re] = cases[k]!;
    t.equal(r.status, 2, `${args.join(' ')} exits 2`);
    t.match(r.stderr, re, `${args.join(' ')} says why`);
    t.equal(r.stderr.split('\n').length, 2, `${args.join(' ')}: one line on stderr`);
    t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
  }
  t.match((await cli(['version'])).stdout, /^\d+\.\d+\.\d+\n$/);
});
