// Where the instructions of a block go, by function, JavaScript included: reads callgrind dumps
// that instructions.ts wrote and, for the JIT's code (which callgrind only knows by address),
// looks the address up in the perf map V8 writes with --perf-basic-prof. With two dumps, prints
// what differs between them, per request, largest first: how the difference between two
// servers' totals (e.g. the generated Fastify adapter and @fastify/postgres) is made up.
//
//   BENCH_NODE_OPTIONS=--perf-basic-prof node --import tsx bench/http/instructions.ts --only …
//   node --import tsx bench/http/attribute.ts <dump> [<other dump>] [--requests 2000] [--top 40]
//
// A dump is one of callgrind's files, `bench/http/.generated/callgrind/<server>.<block>`; pick
// a block from the steady state (a low one of the block list). The map is /tmp/perf-<pid>.map,
// the pid read from valgrind's log next to the dump. Numbers are self cost (instructions in the
// function itself, not in what it calls), so V8 builtins (Builtins_MapConstructor, …) and C++
// show on their own lines; JavaScript is "JS <name> <file>:<line>", and a function inlined by
// TurboFan counts in its caller. Needs callgrind_annotate (valgrind) on PATH.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: 'string', default: '2000' },
    top: { type: 'string', default: '40' },
  },
});
if (positionals.length < 1 || positionals.length > 2) {
  console.error('usage: attribute.ts <callgrind dump> [<other dump>] [--requests n] [--top n]');
  process.exit(1);
}
const requests = Number(values.requests);
const top = Number(values.top);

interface CodeRange {
  start: number;
  end: number;
  name: string;
}

/** V8's perf map: one "start size name" line (hex) per piece of generated code, in order. */
function readPerfMap(dump: string): CodeRange[] {
  const log = `${dump.replace(/\.\d+$/, '')}.log`;
  const pid = /^==(\d+)==/m.exec(readFileSync(log, 'utf8'))?.[1];
  const map = `/tmp/perf-${pid}.map`;
  if (pid === undefined || !existsSync(map)) {
    console.error(`${map} not found: run the server with BENCH_NODE_OPTIONS=--perf-basic-prof.`);
    process.exit(1);
  }
  const ranges: CodeRange[] = [];
  for (const line of readFileSync(map, 'utf8').split('\n')) {
    const [start, size, ...name] = line.split(' ');
    if (!start || !size) continue;
    const from = Number.parseInt(start, 16);
    ranges.push({ start: from, end: from + Number.parseInt(size, 16), name: name.join(' ') });
  }
  return ranges;
}

/** The code at an address; a later entry wins, since V8 reuses the space of collected code. */
function lookUp(ranges: CodeRange[], address: number): string {
  for (let i = ranges.length - 1; i >= 0; i--) {
    const range = ranges[i]!;
    if (range.start <= address && address < range.end) return range.name;
  }
  return 'unknown code';
}

/** Self instructions per request by function name. */
function costs(dump: string): Map<string, number> {
  const ranges = readPerfMap(dump);
  const text = execFileSync('callgrind_annotate', ['--threshold=100', dump], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const byName = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.+)$/.exec(line);
    if (!match || line.includes('PROGRAM TOTALS')) continue;
    const count = Number(match[1]!.replaceAll(',', ''));
    const jit = /^\?\?\?:0x([0-9a-f]+)(?:'\d+)? \[\?\?\?\]$/.exec(match[2]!);
    const name = jit
      ? `JS ${lookUp(ranges, Number.parseInt(jit[1]!, 16))
          .replace(/^JS:[*+~^']*/, '')
          .replace(/^ /, '(anonymous) ')}`
      : match[2]!.replace(/^\?\?\?:/, '').replace(/\(.*$/, '');
    byName.set(name, (byName.get(name) ?? 0) + count / requests);
  }
  return byName;
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US').padStart(9);
const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

const first = costs(positionals[0]!);
if (positionals.length === 1) {
  console.log(`${fmt(total(first))}  instructions per request in all\n`);
  const sorted = [...first].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [name, cost] of sorted) console.log(`${fmt(cost)}  ${name}`);
} else {
  const second = costs(positionals[1]!);
  const names = [...new Set([...first.keys(), ...second.keys()])];
  const rows = names.map((name) => {
    const a = first.get(name) ?? 0;
    const b = second.get(name) ?? 0;
    return { name, a, b, difference: a - b };
  });
  rows.sort((x, y) => y.difference - x.difference);
  console.log(`${'first'.padStart(9)} ${'second'.padStart(9)} ${'first−second'.padStart(12)}`);
  console.log(
    `${fmt(total(first))} ${fmt(total(second))} ${fmt(total(first) - total(second)).padStart(12)}  in all\n`,
  );
  const show = (row: (typeof rows)[number]) =>
    console.log(`${fmt(row.a)} ${fmt(row.b)} ${fmt(row.difference).padStart(12)}  ${row.name}`);
  const moreInFirst = rows.filter((r) => r.difference > 0);
  const moreInSecond = rows.filter((r) => r.difference < 0).reverse();
  console.log('more in the first:');
  for (const row of moreInFirst.slice(0, top)) show(row);
  console.log('\nmore in the second:');
  for (const row of moreInSecond.slice(0, top)) show(row);
}
