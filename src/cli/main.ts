// Entry of the bundled CLI (bin/create-db-hooks.js imports it). Static imports stay minimal —
// commander and the table — so --help, --version and --list answer at once; a real run loads
// run.ts, and prompts/diff/sucrase/prettier load only when that run needs them.
import { CommanderError } from 'commander';
import type { CliOptions } from './answers.js';
import { CancelledError, UsageError } from './errors.js';
import { ownVersion } from './paths.js';
import { createProgram, listText } from './program.js';

const name = 'create-db-hooks';

async function main(argv: readonly string[]): Promise<number> {
  const version = ownVersion();
  const program = createProgram(version).configureOutput({
    // Commander's own errors ("error: unknown option '--x'\n(Did you mean --y?)") become our
    // one-line form.
    outputError: (text, write) =>
      write(
        `${text
          .trim()
          .replace(/^error: /, `${name}: `)
          .replace(/\s*\n\s*/g, ' ')}\n`,
      ),
  });
  try {
    program.parse(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; every parse error is bad input: 2.
      return error.exitCode === 0 ? 0 : 2;
    }
    throw error;
  }
  const options = program.opts<CliOptions>();
  if (options.list) {
    process.stdout.write(listText());
    return 0;
  }
  const { run } = await import('./run.js');
  return run(options, version, {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    isTTY: process.stdin.isTTY === true,
    cwd: process.cwd(),
    env: process.env,
  });
}

try {
  process.exitCode = await main(process.argv);
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`${name}: ${error.message}\n`);
    process.exitCode = error.exitCode;
  } else if (error instanceof CancelledError) {
    process.stderr.write(`${error.message}\n`);
    // A prompt may still hold stdin in raw mode; leave now, as the shell expects after Ctrl-C.
    process.exit(error.exitCode);
  } else {
    process.stderr.write(
      `${name}: unexpected error, please report it:\n${(error as Error).stack ?? error}\n`,
    );
    process.exitCode = 1;
  }
}
