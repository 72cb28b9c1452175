// Entry of the bundled CLI (bin/create-db-hooks.cjs requires it). Static imports stay minimal —
// commander and the table — so --help, --version and --list answer at once; a real run loads
// run.ts, and prompts/sucrase/prettier load only when that run needs them.
import { CommanderError } from 'commander';
import type { CliOptions } from './answers.js';
import { CancelledError, UsageError } from './errors.js';
import { ownVersion } from './paths.js';
import { createProgram, listText } from './program.js';

const name = 'create-db-hooks';

// A reader that goes away early (`--help | head -1`) ends the output quietly, not with an EPIPE
// stack. (Writing to the file descriptors instead of these streams saved nothing measurable:
// within 2 ms of CPU per run, 40 runs each.)
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

function write(fd: 1 | 2, text: string): void {
  (fd === 1 ? process.stdout : process.stderr).write(text);
}

async function main(argv: readonly string[]): Promise<number> {
  const version = ownVersion();
  const program = createProgram(version).configureOutput({
    writeOut: (text) => write(1, text),
    writeErr: (text) => write(2, text),
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
  const { v, ...parsed } = program.opts<CliOptions & { v?: boolean }>();
  if (v) {
    write(1, `${version}\n`);
    return 0;
  }
  // `create-db-hooks express koa -f hono`: positional names and -f add up.
  const positional = program.args;
  const options: CliOptions =
    positional.length > 0
      ? { ...parsed, framework: [...(parsed.framework ?? []), ...positional] }
      : parsed;
  if (options.list) {
    write(1, listText());
    return 0;
  }
  const { run } = await import('./run.js');
  return run(options, version, {
    stdout: (text) => write(1, text),
    stderr: (text) => write(2, text),
    // Asked only when a run could prompt: touching process.stdin sets up a stream (and loads
    // net or tty), which --yes runs never need.
    isTTY: () => process.stdin.isTTY === true,
    cwd: process.cwd(),
    env: process.env,
  });
}

function fail(error: unknown): void {
  if (error instanceof UsageError) {
    write(2, `${name}: ${error.message}\n`);
    process.exitCode = error.exitCode;
  } else if (error instanceof CancelledError) {
    write(2, `${error.message}\n`);
    // A prompt may still hold stdin in raw mode; leave now, as the shell expects after Ctrl-C.
    process.exit(error.exitCode);
  } else {
    write(2, `${name}: unexpected error, please report it:\n${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  }
}

// No top-level await: the bundle is CommonJS (see tsup.config.ts).
main(process.argv).then((code) => {
  process.exitCode = code;
}, fail);
