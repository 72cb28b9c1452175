// Stops what a test started, whatever happened: the last thing started is stopped first, every
// step runs even when an earlier one fails, and the first failure is reported afterwards.
import type { TestContext } from 'node:test';

export type Defer = (step: () => unknown) => void;

/** Returns `defer(step)`: the steps run after the test, in reverse order. */
export function cleanup(t: TestContext): Defer {
  const steps: (() => unknown)[] = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const step of steps.reverse()) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  });
  return (step) => steps.push(step);
}
