// The questions, asked only in a terminal without --yes. Loaded with a dynamic import, so a
// non-interactive run never loads @inquirer/prompts. Each question is skipped when a flag or the
// manifest already answers it; Ctrl-C at any of them becomes a CancelledError (exit 130).
import { checkbox, confirm, select } from '@inquirer/prompts';
import { type Answers, type Draft, withTargets } from './answers.js';
import { CancelledError } from './errors.js';
import { type DatabaseId, databases, type TargetId, targets } from './targets.js';

async function cancellable<T>(question: Promise<T>): Promise<T> {
  try {
    return await question;
  } catch (error) {
    if (error instanceof Error && error.name === 'ExitPromptError') {
      throw new CancelledError('Cancelled: nothing written.');
    }
    throw error;
  }
}

/** Asks for the targets and the database that flags did not give. */
export async function askAnswers(draft: Draft): Promise<Answers> {
  let chosen: TargetId[] = draft.flagTargets;
  if (chosen.length === 0) {
    const preselected = new Set([...draft.manifestTargets, ...draft.detectedTargets]);
    chosen = await cancellable(
      checkbox<TargetId>({
        message: 'Which frameworks should get database hooks?',
        choices: targets.map((target) => ({
          name: `${target.id.padEnd(10)} ${target.title}`,
          value: target.id,
          short: target.id,
          checked: preselected.has(target.id),
          ...(draft.manifestTargets.includes(target.id) && { description: 'already added' }),
        })),
        required: draft.manifestTargets.length === 0,
        pageSize: targets.length,
        instructions: ' (space to select, enter to confirm)',
      }),
    );
  }
  let database: DatabaseId = draft.database;
  if (draft.databaseSource !== 'flag') {
    database = await cancellable(
      select<DatabaseId>({
        message: 'Which database?',
        choices: databases.map((db) => ({
          name: `${db.id.padEnd(10)} ${db.title}`,
          value: db.id,
          short: db.id,
        })),
        default: draft.database,
      }),
    );
  }
  return withTargets(draft, chosen, database);
}

/** A yes/no question; Ctrl-C cancels the run. */
export async function ask(message: string, defaultAnswer: boolean): Promise<boolean> {
  return cancellable(confirm({ message, default: defaultAnswer }));
}
