// The questions, asked only in a terminal without --yes. @inquirer/prompts is loaded on the first
// question, so a non-interactive run never loads it. Each question is skipped when a flag or the
// manifest already answers it; Ctrl-C at any of them becomes a CancelledError (exit 130).
import { type Answers, type Draft, withTargets } from './answers.js';
import { CancelledError } from './errors.js';
import { type DatabaseId, databases, type TargetId, targets } from './targets.js';

const inquirer = () => import('@inquirer/prompts');

async function cancellable<T>(question: () => Promise<T>): Promise<T> {
  try {
    return await question();
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
    const { checkbox } = await inquirer();
    chosen = await cancellable(() =>
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
    const { select } = await inquirer();
    database = await cancellable(() =>
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
  const { confirm } = await inquirer();
  return cancellable(() => confirm({ message, default: defaultAnswer }));
}
