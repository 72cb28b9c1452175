// The command line: every flag of DESIGN.md, and a help text with one example per target taken
// from the table, so adding a target updates --help by itself.
import { Command, Option } from 'commander';
import { databases, driversOf, orms, targetIds, targets } from './targets.js';

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** The SQLite drivers, one per line, the default marked. */
function driverLines(): string[] {
  const drivers = driversOf('sqlite');
  const width = Math.max(...drivers.map((d) => d.id.length));
  return drivers.map((d, i) => `  ${d.id.padEnd(width)}  ${d.title}${i === 0 ? ' (default)' : ''}`);
}

function helpAfter(): string {
  const width = Math.max(...targets.map((t) => t.id.length));
  const example = (id: string) => `npx create-db-hooks ${id}`;
  const exampleWidth = Math.max(...targets.map((t) => example(t.id).length));
  const lines = [
    '',
    'Examples (then, in your app):',
    ...targets.map((t) => `  ${example(t.id).padEnd(exampleWidth)}   ${t.usage}`),
    '  npx create-db-hooks express koa -d postgres --yes',
    '  npx create-db-hooks -C my-app express --yes   (no package.json: makes a runnable app)',
    '',
    'Targets:',
    ...targets.map((t) => `  ${t.id.padEnd(width)}  ${t.title}`),
    '',
    'Databases:',
    ...databases.map((d) => `  ${d.id.padEnd(width)}  ${d.title}`),
    '',
    'SQLite drivers (--driver):',
    ...driverLines(),
    '',
    'ORMs (--orm, optional):',
    ...orms.map((o) => `  ${o.id.padEnd(width)}  ${o.title}`),
    '',
    'Exit codes: 0 done (also after "no" at the final question), 1 an install failed,',
    '2 bad input or a missing answer, 130 Ctrl-C.',
  ];
  return lines.join('\n');
}

export function createProgram(version: string): Command {
  return (
    new Command('create-db-hooks')
      .description(
        'Add per-request database connection handling (open on request, release when the response is done) to a Node.js web app.',
      )
      .usage('[framework...] [options]')
      .argument('[framework...]', `target ids, as with -f (${targetIds.join(', ')})`)
      .option(
        '-C, --cwd <dir>',
        'project directory (default: the nearest folder upward with a package.json, else .)',
      )
      .option(
        '-f, --framework <ids>',
        'one or more target ids, comma-separated (same as the positional names)',
        collect,
      )
      .option(
        '--orm <ids>',
        `${orms.map((o) => o.id).join(' | ')}: also bind that ORM to the request's connection`,
        collect,
      )
      .option('-d, --database <id>', `${databases.map((d) => d.id).join(' | ')}`)
      .option(
        '--driver <id>',
        `sqlite only: ${driversOf('sqlite')
          .map((d, i) => (i === 0 ? `${d.id} (default)` : d.id))
          .join(' | ')}`,
      )
      .addOption(
        new Option(
          '--lang <ts|js>',
          'default: ts when tsconfig.json exists, else js; module format (ESM/CJS) from package.json "type"',
        ),
      )
      .option(
        '--dir <path>',
        'where generated files go (default: src/db when src/ exists, else db)',
      )
      .option(
        '-y, --yes',
        'never prompt: take flags, then the manifest, then detection, then defaults',
      )
      .option(
        '--dry-run',
        'print the plan and a diff of every file; write nothing, install nothing',
      )
      .option('--force', 'overwrite generated files that were edited since they were generated')
      .option('--no-install', 'do not install dependencies')
      .option('--list', 'print targets and databases and exit')
      .version(version, '-V, --version', 'print the version (also -v)')
      // -v as well, as most tools take it; commander gives the version option one short flag.
      .addOption(new Option('-v').hideHelp())
      .helpOption('-h, --help', 'show this help')
      .addHelpText('after', helpAfter)
      .showSuggestionAfterError(true)
      .exitOverride()
  );
}
/** --list: targets and databases, one per line, id first. */
export function listText(): string {
  const width = Math.max(...[...targets, ...databases].map((row) => row.id.length));
  return [
    'Targets:',
    ...targets.map((t) => `  ${t.id.padEnd(width)}  ${t.title}`),
    '',
    'Databases:',
    ...databases.map((d, i) => `  ${d.id.padEnd(width)}  ${d.title}${i === 0 ? ' (default)' : ''}`),
    '',
    'SQLite drivers (--driver):',
    ...driverLines(),
    '',
    'ORMs (--orm, optional):',
    ...orms.map((o) => `  ${o.id.padEnd(width)}  ${o.title}`),
    '',
  ].join('\n');
}
