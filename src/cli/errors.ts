// The two ways a run ends early on purpose. main.ts turns them into exit codes; anything else is
// a bug and exits 1 with its stack.

/** Bad input: one line on stderr naming the bad value and the valid ones, exit 2, nothing written. */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly exitCode = 2;
}

/** The user pressed Ctrl-C at a prompt: nothing written, exit 130 (128 + SIGINT), as shells do. */
export class CancelledError extends Error {
  override name = 'CancelledError';
  readonly exitCode = 130;
}

/** `a, b or c`, for messages that list the valid values. */
export function oneOf(values: readonly string[]): string {
  if (values.length <= 1) return values.join('');
  return `${values.slice(0, -1).join(', ')} or ${values.at(-1)}`;
}
