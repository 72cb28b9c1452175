// The questions, asked only in a terminal without --yes. @inquirer/prompts is loaded on the first
// question, so a non-interactive run never loads it. Each question is skipped when a flag or the
// manifest already answers it; Ctrl-C at any of them becomes a CancelledError (exit 130).
//
// Questions and what the user needs to answer them are drawn on the terminal, not on stdout:
// `create-db-hooks --dry-run > plan.txt` still shows them, and stdout carries only the result.
import { openSync } from 'node:fs';
import { WriteStream } from 'node:tty';
import { type Answers, type Draft, withTargets } from './answers.js';
import { CancelledError } from './errors.js';
import type { Language } from './language.js';
import {
  type DatabaseId,
  databases,
  driversOf,
  type OrmId,
  orms,
  type TargetId,
  targets,
} from './targets.js';

const inquirer = () => import('@inquirer/prompts');

let terminalStream: NodeJS.WriteStream | undefined;

/** The terminal: stdout when it is one, else stderr when it is one, else /dev/tty. */
function terminal(): NodeJS.WriteStream {
  if (terminalStream) return terminalStream;
  if (process.stdout.isTTY) terminalStream = process.stdout;
  else if (process.stderr.isTTY) terminalStream = process.stderr;
  else {
    try {
      terminalStream = new WriteStream(openSync('/dev/tty', 'w'));
    } catch {
      terminalStream = process.stderr; // no controlling terminal (Windows): stderr is the best left
    }
  }
  return terminalStream;
}

/** Where the questions are drawn: the terminal, whatever stdout is redirected to. */
const context = () => ({ output: terminal() });

/** Text for the person answering (the plan before the confirmation), shown on the terminal. */
export function say(text: string): void {
  terminal().write(text);
}

/**
 * How many terminal lines these choices take at most, each wrapped at the terminal's width (a
 * line broken between words holds less than a full width). More than they take shows no more.
 */
function linesOf(choices: readonly string[]): number {
  const width = Math.max(20, (terminal().columns || 80) - 12);
  return choices.reduce((sum, text) => sum + Math.ceil(text.length / width), 0);
}

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
  const allAdded = targets.every((t) => draft.manifestTargets.includes(t.id));
  const choosing = chosen.length === 0 && !allAdded;
  if (choosing) {
    const preselected = new Set([...draft.manifestTargets, ...draft.detectedTargets]);
    const { checkbox } = await inquirer();
    const locked = '(added earlier; stays: delete its file by hand to drop it)';
    // A target added earlier stays: its adapter may be imported by the app, and taking it out
    // of the manifest would not delete its file. Shown ticked and locked.
    const choices = targets.map((target) => ({
      name: `${target.id.padEnd(10)} ${target.title}`,
      value: target.id,
      short: target.id,
      checked: preselected.has(target.id),
      ...(draft.manifestTargets.includes(target.id) && { disabled: locked }),
    }));
    chosen = await cancellable(() =>
      checkbox<TargetId>(
        {
          message: 'Which frameworks should get database hooks?',
          choices,
          required: draft.manifestTargets.length === 0,
          // Every choice on one page, however many lines a narrow terminal wraps them to: a
          // page that scrolls hides choices, and a wrong one gets ticked.
          pageSize: linesOf(choices.map((c) => ` ◉ ${c.name} ${c.disabled ?? ''}`)),
          loop: false,
          instructions: ' (space to select, enter to confirm)',
          theme: { style: { disabledChoice: (text: string) => ` ◉ ${text}` } },
        },
        context(),
      ),
    );
  }
  // Asked only when neither a flag nor db-hooks.json answers it: switching is `-d`.
  const askDatabase = draft.databaseSource === 'detected' || draft.databaseSource === 'default';
  let database: DatabaseId = draft.database;
  if (askDatabase) {
    const { select } = await inquirer();
    database = await cancellable(() =>
      select<DatabaseId>(
        {
          message: 'Which database?',
          choices: databases.map((db) => ({
            name: `${db.id.padEnd(10)} ${db.title}`,
            value: db.id,
            short: db.id,
          })),
          default: draft.database,
        },
        context(),
      ),
    );
  }
  // Asked along with the database: a run whose flags named it takes --driver or the default.
  let driver = draft.driver;
  const drivers = driversOf(database);
  if (askDatabase && draft.driverSource === 'default' && drivers.length > 1) {
    const { select } = await inquirer();
    driver = await cancellable(() =>
      select<string>(
        {
          message: 'Which SQLite driver?',
          choices: drivers.map((d) => ({
            name: `${d.id.padEnd(14)} ${d.title}`,
            value: d.id,
            short: d.id,
          })),
          default: drivers[0]!.id,
        },
        context(),
      ),
    );
  }
  let language = draft.language;
  if (draft.newApp && draft.languageSource === 'detected') {
    const { select } = await inquirer();
    language = await cancellable(() =>
      select<Language>(
        {
          message: 'TypeScript or JavaScript?',
          choices: [
            { name: 'TypeScript', value: 'ts' },
            { name: 'JavaScript', value: 'js' },
          ],
          default: 'ts',
        },
        context(),
      ),
    );
  }
  // Asked along with the frameworks: a run whose flags named them takes --orm or nothing.
  let chosenOrms: OrmId[] = draft.flagOrms ?? [];
  const ormsLeft = orms.filter((orm) => !draft.manifestOrms.includes(orm.id));
  if (choosing && draft.flagOrms === undefined && ormsLeft.length > 0) {
    const { select } = await inquirer();
    const orm = await cancellable(() =>
      select<OrmId | 'none'>(
        {
          message: "Bind a query builder or ORM to the request's connection?",
          choices: [
            { name: `${'none'.padEnd(10)} raw SQL through db only`, value: 'none', short: 'none' },
            ...ormsLeft.map((o) => ({
              name: `${o.id.padEnd(10)} ${o.title}`,
              value: o.id,
              short: o.id,
            })),
          ],
          default: 'none',
        },
        context(),
      ),
    );
    chosenOrms = orm === 'none' ? [] : [orm];
  }
  return withTargets(draft, chosen, database, language, chosenOrms, driver);
}

/** A yes/no question; Ctrl-C cancels the run. */
export async function ask(message: string, defaultAnswer: boolean): Promise<boolean> {
  const { confirm } = await inquirer();
  return cancellable(() => confirm({ message, default: defaultAnswer }, context()));
}
