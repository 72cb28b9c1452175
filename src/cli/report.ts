// What a run tells the user: the plan as status lines (for the confirmation and --dry-run), the
// diffs of --dry-run, and the closing Created / Updated / Unchanged / Skipped lists with the
// next steps.
import { basename, relative } from 'node:path';
import type { Draft } from './answers.js';
import { dependencyMajor, type PackageManager, type ProjectFacts } from './detect.js';
import { oneOf } from './errors.js';
import { formatCommand, type InstallCommand, installCommands } from './install.js';
import { importExtension, type ModuleFormat } from './language.js';
import {
  type FileStatus,
  type MissingFramework,
  missingIgnores,
  type Plan,
  type PlannedFile,
  sqliteFiles,
} from './plan.js';
import { driversOf, findDatabase, findOrm, findTarget, type TargetId } from './targets.js';

/**
 * One line of what detection found, shown before the questions (as shadcn does), e.g.
 * `Express 5 · TypeScript (ESM) · npm · src/db`.
 */
export function projectSummary(facts: ProjectFacts, draft: Draft): string {
  const frameworks = facts.frameworks.map((id) => {
    const target = findTarget(id)!;
    const version = dependencyMajor(facts, target.detectedBy[0] ?? '');
    return version ? `${target.name} ${version}` : target.name;
  });
  const language = `${draft.language === 'ts' ? 'TypeScript' : 'JavaScript'} (${draft.moduleFormat === 'esm' ? 'ESM' : 'CommonJS'})`;
  const parts = draft.newApp
    ? [`new app in ${basename(facts.root)}/`, facts.packageManager, draft.dir]
    : [
        frameworks.length > 0 ? frameworks.join(', ') : 'no framework found',
        language,
        facts.packageManager,
        draft.dir,
      ];
  if (facts.manifest)
    parts.push(
      `set up earlier: ${facts.manifest.targets.join(', ')} on ${facts.manifest.database}`,
    );
  return parts.join(' · ');
}

const verbs: Record<FileStatus, string> = {
  created: 'create',
  updated: 'update',
  unchanged: 'keep',
  skipped: 'skip',
};

/** Why a file is skipped, without brackets: callers put it in theirs. */
function skipReason(file: PlannedFile): string {
  return file.reason === 'edited'
    ? 'edited since it was generated; --force overwrites it'
    : 'already exists and was not written by create-db-hooks; --force overwrites it';
}

/** One line per file: what a run would do with it. */
export function planLines(plan: Plan): string[] {
  return plan.files.map(
    (file) =>
      `  ${verbs[file.status].padEnd(6)}  ${file.path}${file.status === 'skipped' ? ` (${skipReason(file)})` : ''}`,
  );
}

/** Next steps fit a 100-column terminal: longer lines break at spaces, indented under their step. */
const width = 100;
export function wrapStep(step: string, indent = '  '): string[] {
  const lead = indent + (/^\s*/.exec(step)?.[0] ?? '');
  const lines: string[] = [];
  let line = indent + step;
  while (line.length > width) {
    const cut = line.lastIndexOf(' ', width);
    if (cut <= lead.length) break; // one long word (a path): leave it whole
    lines.push(line.slice(0, cut));
    line = `${lead}  ${line.slice(cut + 1)}`;
  }
  lines.push(line);
  return lines;
}

/** How the project uses the adapter; CommonJS has no top-level await. */
export function usageFor(target: TargetId, moduleFormat: ModuleFormat): string {
  const usage: string = findTarget(target)!.usage;
  return moduleFormat === 'cjs' ? usage.replace(/^await /, '') : usage;
}

/** --dry-run: the plan, a unified diff of every file that would change, the install commands. */
export async function dryRunText(plan: Plan, commands: readonly InstallCommand[]): Promise<string> {
  const { createTwoFilesPatch } = await import('diff');
  const out = ['Dry run: nothing is written and nothing is installed.', '', ...planLines(plan), ''];
  for (const file of plan.files) {
    if (file.status === 'unchanged') continue;
    const from = file.current === undefined ? '/dev/null' : `a/${file.path}`;
    const patch = createTwoFilesPatch(
      from,
      `b/${file.path}`,
      file.current ?? '',
      file.content,
      undefined,
      undefined,
      { context: 3 },
    );
    // Drop the ==== separator line createTwoFilesPatch puts above the ---/+++ header.
    const body = patch
      .split('\n')
      .filter((line) => !/^={5,}$/.test(line))
      .join('\n')
      .trimEnd();
    const note = file.status === 'skipped' ? ` (skipped: ${skipReason(file)})` : '';
    out.push(`diff ${file.path}${note}`, body, '');
  }
  if (commands.length > 0) {
    out.push('Would run:', ...commands.map((command) => `  ${formatCommand(command)}`), '');
  }
  if (plan.databaseChange) {
    const { from, to } = plan.databaseChange;
    out.push(
      `The database changes from ${from} to ${to}: a real run asks first in a terminal, and needs --force without one.`,
      '',
    );
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function importLine(
  plan: Plan,
  target: TargetId,
  names = findTarget(target)!.exports.join(', '),
): string {
  const { dir, language, moduleFormat } = plan.answers;
  const fromSrc = dir.startsWith('src/') ? dir.slice('src/'.length) : dir;
  const specifier = `./${fromSrc}/${target}${importExtension(plan.answers)}`;
  return language === 'js' && moduleFormat === 'cjs'
    ? `const { ${names} } = require('${specifier}');`
    : `import { ${names} } from '${specifier}';`;
}

export interface ReportInput {
  plan: Plan;
  packageManager: PackageManager;
  /** Commands still to run by hand (--no-install, or the install failed). */
  pendingInstall: readonly InstallCommand[];
  /** Commands that make an installed driver load (its build script did not run). */
  fixes?: readonly string[];
  /** Frameworks the targets need that the user chose not to install now. */
  declinedFrameworks?: readonly MissingFramework[];
  /** The directory the user ran us from, to print `cd` for a new app made elsewhere. */
  invokedFrom: string;
  /** The project's Express major: Express 4 apps get one more step. */
  expressMajor?: number | undefined;
}

/** The closing report: what happened to each file, then what to do next. */
export function finalReport({
  plan,
  packageManager,
  pendingInstall,
  declinedFrameworks = [],
  fixes = [],
  invokedFrom,
  expressMajor,
}: ReportInput): string {
  const out: string[] = [];
  const section = (title: string, files: PlannedFile[]) => {
    if (files.length === 0) return;
    out.push(title, ...files.map((file) => `  ${file.path}`), '');
  };
  const byStatus = (status: FileStatus) => plan.files.filter((file) => file.status === status);
  section('Created', byStatus('created'));
  section('Updated', byStatus('updated'));
  section('Unchanged', byStatus('unchanged'));
  const skipped = byStatus('skipped');
  section(
    'Skipped (edited; --force overwrites)',
    skipped.filter((f) => f.reason === 'edited'),
  );
  section(
    'Skipped (exists, not written by create-db-hooks; --force overwrites)',
    skipped.filter((f) => f.reason !== 'edited'),
  );
  if (plan.files.every((file) => file.status === 'unchanged')) {
    out.push('Already up to date: nothing written.', '');
  }

  const steps: string[] = [];
  const { answers } = plan;
  if (answers.newApp) {
    const rel = relative(invokedFrom, plan.root);
    const where = rel.startsWith('..') ? plan.root : rel;
    if (where !== '') steps.push(`cd ${/\s/.test(where) ? `'${where}'` : where}`);
    for (const command of pendingInstall) steps.push(formatCommand(command));
    steps.push(...fixes);
    if (answers.database === 'postgres') {
      // The app cannot start without a server to connect to.
      steps.push(
        'export DATABASE_URL=postgres://user:pass@localhost:5432/app   (your PostgreSQL server)',
      );
    } else if (answers.database === 'mysql') {
      steps.push(
        'export DATABASE_URL=mysql://user:pass@localhost:3306/app   (your MySQL or MariaDB server)',
      );
    }
    steps.push(`${packageManager === 'npm' ? 'npm' : packageManager} start`);
    steps.push('curl http://127.0.0.1:3000/users/1   (the app reads PORT, 3000 by default)');
    if (answers.orms?.includes('prisma')) {
      const specifier = `./${answers.dir.replace(/^src\//, '')}/prisma.js`;
      const cjs = answers.language === 'js' && answers.moduleFormat === 'cjs';
      steps.push(...prismaSteps(specifier, answers.language, cjs));
    }
  } else {
    for (const command of pendingInstall) steps.push(formatCommand(command));
    steps.push(...fixes);
    for (const { target, dependencies } of declinedFrameworks) {
      const adapter = plan.files.find((file) => file.kind === 'adapter' && file.target === target);
      const commands = installCommands(
        packageManager,
        dependencies.filter((d) => !d.typesOnly),
        dependencies.filter((d) => d.typesOnly),
        false,
      );
      steps.push(
        `${findTarget(target)!.name} is not installed: ${adapter?.path ?? target} cannot load${answers.language === 'ts' ? ' and tsc fails' : ''} until you run`,
        ...commands.map((command) => `    ${formatCommand(command)}`),
      );
    }
    const added = plan.files.filter((file) => file.kind === 'adapter' && file.status === 'created');
    const base = answers.dir.startsWith('src/') ? 'a file in src/' : 'the project root';
    for (const file of added) {
      const target = findTarget(file.target!)!;
      steps.push(
        `${target.name}: in your app (import path as seen from ${base}):`,
        `    ${importLine(plan, target.id)}`,
        `    ${usageFor(target.id, answers.moduleFormat)}${'placement' in target ? `   // ${target.placement}` : ''}`,
      );
    }
    if (expressMajor === 4 && added.some((file) => file.target === 'express')) {
      steps.push(
        'Express 4 ignores the promise of an async handler, so a statement refused because its client left would be an unhandled rejection, which ends the process. Let that one pass in your entry file:',
        `    ${importLine(plan, 'express', 'isGoneClient')}`,
        "    process.on('unhandledRejection', (reason) => {",
        '      if (!isGoneClient(reason)) throw reason; // any other ends the process, as by default',
        '    });',
      );
    }
    for (const file of plan.files.filter((f) => f.kind === 'orm' && f.status === 'created')) {
      const orm = findOrm(basename(file.path).replace(/\.[cm]?[jt]s$/, ''));
      if (!orm) continue;
      const fromSrc = answers.dir.startsWith('src/')
        ? answers.dir.slice('src/'.length)
        : answers.dir;
      const specifier = `./${fromSrc}/${orm.id}${importExtension(answers)}`;
      if (orm.id === 'prisma') {
        const cjs = answers.language === 'js' && answers.moduleFormat === 'cjs';
        steps.push(...prismaSteps(specifier, answers.language, cjs));
        continue;
      }
      steps.push(
        `${orm.name}: its queries run on the request's connection (README: ${orm.name}):`,
        answers.language === 'js' && answers.moduleFormat === 'cjs'
          ? `    const { orm } = require('${specifier}');`
          : `    import { orm } from '${specifier}';`,
      );
    }
    if (added.length > 0 || plan.databaseChange) {
      const database = findDatabase(answers.database)!;
      steps.push(
        database.id === 'sqlite'
          ? `Set ${database.envVar} to the database file (default app.db).`
          : database.id === 'mysql'
            ? `Set ${database.envVar} to your MySQL or MariaDB server, e.g. mysql://user:pass@localhost:3306/app`
            : `Set ${database.envVar} to your PostgreSQL server, e.g. postgres://user:pass@localhost:5432/app`,
      );
    }
  }
  if (!answers.newApp && answers.database === 'sqlite') {
    const missing = missingIgnores(plan.gitignore, sqliteFiles);
    if (missing.length > 0) {
      steps.push(
        `Add ${oneOf(missing).replace(' or ', ' and ')} to .gitignore: the SQLite database and its journal files.`,
      );
    }
  }
  if (plan.databaseChange) {
    const { from, to } = plan.databaseChange;
    const index = plan.files.find((file) => file.kind === 'index');
    if (index?.status === 'skipped') {
      steps.push(
        `${index.path} was edited, so it still sets up ${from}: switch it to ${to} by hand, or re-run with --force to regenerate it.`,
      );
    }
    const unused = plan.databaseChange.unused.map((name) => `${answers.dir}/${name}.*`);
    if (unused.length === 1) {
      steps.push(`The ${from} driver file ${unused[0]} is no longer used; delete it when ready.`);
    } else if (unused.length > 1) {
      steps.push(
        `The ${from} driver files ${unused.join(' and ')} are no longer used; delete them when ready.`,
      );
    }
  }
  if (plan.driverChange) {
    const old = driversOf(answers.database).find((d) => d.id === plan.driverChange!.from);
    const packages = old?.dependencies.filter((dep) => !dep.typesOnly).map((dep) => dep.name);
    if (old) {
      steps.push(
        `The ${old.id} driver file ${answers.dir}/${old.runtimeFile}.* is no longer used` +
          `${packages?.length ? `, nor ${packages.join(', ')}` : ''}; remove it when ready.`,
      );
    }
  }
  if (steps.length > 0) out.push('Next steps', ...steps.flatMap((step) => wrapStep(step)), '');
  return `${out.join('\n').trimEnd()}\n`;
}

/**
 * Prisma's client is generated in the project: what to generate, and how to bind it. TypeScript
 * gets the prisma-client generator (TypeScript source in the project), JavaScript the
 * prisma-client-js one (@prisma/client).
 */
function prismaSteps(specifier: string, language: 'ts' | 'js', cjs: boolean): string[] {
  const generator =
    language === 'ts'
      ? 'provider = "prisma-client", output = "../src/generated/prisma"'
      : 'provider = "prisma-client-js"';
  const client = language === 'ts' ? './generated/prisma/client.js' : '@prisma/client';
  return [
    `Prisma: in prisma/schema.prisma set \`generator client { ${generator} }\`, run \`npx prisma generate\`, and bind the client (README: Prisma):`,
    cjs
      ? `    const { PrismaClient } = require('${client}');`
      : `    import { PrismaClient } from '${client}';`,
    cjs
      ? `    const { prismaAdapter, prismaFor } = require('${specifier}');`
      : `    import { prismaAdapter, prismaFor } from '${specifier}';`,
    '    const prisma = prismaFor(new PrismaClient({ adapter: prismaAdapter() }));',
  ];
}
