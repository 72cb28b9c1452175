// One run, in the order the architecture reads: detect → answers (flags, manifest, detection,
// defaults, then prompts) → plan → check → dry run or write → install → report. Loaded lazily by
// main.ts so --help, --version and --list stay instant.
import { type Answers, type CliOptions, draftAnswers, finishAnswers } from './answers.js';
import {
  dependencyMajor,
  detectProject,
  findProjectRoot,
  isEmptyFolder,
  type ProjectFacts,
} from './detect.js';
import { oneOf, UsageError } from './errors.js';
import {
  formatCommand,
  type InstallCommand,
  type InstallOutcome,
  installAndCheck,
  installCommands,
  packageManagerVersion,
} from './install.js';
import { isNewerVersion, MANIFEST_FILE, sameCode } from './manifest.js';
import { appEntryPath, buildPlan, filesToWrite, type MissingFramework } from './plan.js';
import { type GeneratedFile, renderAppFile, renderGeneratedFiles } from './render.js';
import { dryRunText, finalReport, planLines, projectSummary } from './report.js';
import { projectFormatter } from './style.js';
import { driverFiles, findTarget } from './targets.js';
import { assertWritable, readIfExists, writeFilesAtomically } from './write.js';

export interface RunIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether questions may be asked: stdin is a terminal. Called only without --yes. */
  isTTY: () => boolean;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

/** What planning needs from disk and templates: the rendered files and what is there now. */
export interface PlanSources {
  rendered: GeneratedFile[];
  current: Map<string, string | undefined>;
}

/**
 * Renders the files in the project's own style (its formatter, when it has one) and reads what
 * is on disk now. Done once; the plan is then built from it, again after per-file answers.
 */
export async function planSources(
  facts: ProjectFacts,
  answers: Answers,
  version: string,
): Promise<PlanSources> {
  const request = {
    targets: answers.targets,
    orms: answers.orms,
    database: answers.database,
    driver: answers.driver,
    style: { language: answers.language, moduleFormat: answers.moduleFormat },
    dir: answers.dir,
    version,
  };
  const rendered: GeneratedFile[] = await renderGeneratedFiles(request);
  if (answers.newApp) {
    rendered.push(
      await renderAppFile({ ...request, target: answers.targets[0]!, path: appEntryPath(answers) }),
    );
  }
  const format = projectFormatter(facts.root, facts.packageJson);
  if (format) {
    for (const file of rendered) file.content = await format(file.path, file.content);
  }
  const paths = [
    ...rendered.map((file) => file.path),
    'package.json',
    'tsconfig.json',
    'pnpm-workspace.yaml',
    '.gitignore',
    MANIFEST_FILE,
  ];
  const current = new Map(paths.map((path) => [path, readIfExists(facts.root, path)]));
  return { rendered, current };
}

/**
 * The files on disk a database switch would overwrite: those whose content for the new database
 * differs from what it was for the old one (index, an ORM binding) and from what is there now.
 * Adapters and the runtime read the same for every database: an edit in them is not the switch's.
 */
async function filesTheSwitchChanges(
  facts: ProjectFacts,
  answers: Answers,
  sources: PlanSources,
  version: string,
): Promise<string[]> {
  const { driver: _new, ...rest } = answers;
  const driver = facts.manifest?.driver;
  const before = await planSources(
    facts,
    { ...rest, database: facts.manifest!.database, ...(driver !== undefined && { driver }) },
    version,
  );
  const old = new Map(before.rendered.map((file) => [file.path, file.content]));
  return sources.rendered
    .filter((file) => {
      const now = sources.current.get(file.path);
      return (
        now !== undefined && !sameCode(now, file.content) && old.get(file.path) !== file.content
      );
    })
    .map((file) => file.path);
}

/** `n thing` or `n things`. */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

export async function run(options: CliOptions, version: string, io: RunIo): Promise<number> {
  const cwd = options.cwd ?? findProjectRoot(io.cwd) ?? io.cwd;
  const facts = detectProject(cwd, io.env);
  const interactive = !options.yes && io.isTTY();
  const prompts = interactive ? await import('./prompts.js') : undefined;

  // A folder with files but no package.json is no project (a home directory, say): making an
  // app there would scatter package.json and src/ among someone's files.
  if (!facts.packageJson && !isEmptyFolder(facts.root)) {
    const where = facts.root === io.cwd ? 'this folder' : `'${facts.root}'`;
    if (!prompts) {
      throw new UsageError(
        `${where} has files but no package.json, so it is not a project: run create-db-hooks in your project (or -C <project>), or -C <new folder> for a new app`,
      );
    }
    const question = `${where} has files but no package.json. Make a new app here anyway?`;
    if (!(await prompts.ask(question, false))) {
      prompts.say('Nothing written.\n');
      return 0;
    }
  }

  const written = facts.manifest?.version;
  if (written !== undefined && isNewerVersion(written, version) && !options.force) {
    throw new UsageError(
      `${MANIFEST_FILE} was written by create-db-hooks ${written}, newer than this one (${version}): run npx create-db-hooks@latest, or pass --force to go on with ${version}`,
    );
  }

  const draft = draftAnswers(options, facts);
  // Check the generated directory before asking anything: a bad --dir fails at once.
  const dirSource =
    options.dir !== undefined ? '--dir' : facts.manifest ? `${MANIFEST_FILE} "dir"` : 'the folder';
  assertWritable(facts.root, draft.dir, { directory: true, what: `${dirSource} '${draft.dir}'` });

  if (prompts) prompts.say(`${projectSummary(facts, draft)}\n\n`);
  let answers = prompts ? await prompts.askAnswers(draft) : finishAnswers(draft);

  // pnpm's version decides how it is told to build better-sqlite3 (see install.ts).
  const pmVersion =
    facts.packageManager === 'pnpm'
      ? await packageManagerVersion(facts.packageManager, facts.root)
      : undefined;
  let sources = await planSources(facts, answers, version);

  // A database switch overwrites the files it changes (index, an ORM binding), edited or not,
  // once the user agrees: --force, or yes in a terminal. Edits elsewhere are kept.
  const previous = facts.manifest?.database;
  let switchFiles: string[] = [];
  if (previous !== undefined && previous !== answers.database) {
    switchFiles = await filesTheSwitchChanges(facts, answers, sources, version);
    const overwrites = switchFiles.length > 0 ? `it overwrites ${switchFiles.join(', ')}` : '';
    if (!options.force && !options.dryRun) {
      if (!prompts) {
        throw new UsageError(
          `db-hooks.json says database '${previous}', --database says '${answers.database}': pass --force to switch${overwrites && ` (${overwrites}; other edited files are kept)`}`,
        );
      }
      const question = `Switch the database from ${previous} to ${answers.database}?${overwrites && ` ${overwrites[0]!.toUpperCase()}${overwrites.slice(1)}.`}`;
      if (!(await prompts.ask(question, false))) {
        // The old database, on the driver it had.
        const { driver: _dropped, ...rest } = answers;
        const driver = facts.manifest?.driver;
        answers = { ...rest, database: previous, ...(driver !== undefined && { driver }) };
        sources = await planSources(facts, answers, version);
        switchFiles = [];
      }
    }
  }

  // In a switch, --force was the consent to it: it overwrites the switch's files, no others.
  const switching = previous !== undefined && previous !== answers.database;
  const force = options.force === true && !switching;
  const planInput = {
    facts,
    answers,
    force,
    version,
    ...sources,
    packageManagerVersion: pmVersion,
    overwrite: new Set(switchFiles),
  };
  let plan = buildPlan(planInput);
  // Per file, as shadcn asks: replacing one edited file must not cost the edits in another.
  if (prompts && !force && !options.dryRun) {
    const overwrite = new Set(switchFiles);
    for (const file of plan.files.filter((f) => f.reason === 'edited')) {
      const question = `${file.path} was edited since it was generated. Replace it with the new version (your edits in it are lost)?`;
      if (await prompts.ask(question, false)) overwrite.add(file.path);
    }
    if (overwrite.size > 0) plan = buildPlan({ ...planInput, overwrite });
  }
  for (const file of filesToWrite(plan)) assertWritable(facts.root, file.path);

  // A target whose framework the project lacks (koa in an Express app): its adapter would not
  // load and tsc would fail. Install the framework, asking first in a terminal; a "no" is told
  // exactly what to install in the Next steps.
  let declined: MissingFramework[] = [];
  if (prompts && plan.frameworks.length > 0 && options.install && !options.dryRun) {
    const names = plan.frameworks.map((f) => findTarget(f.target)!.name);
    const packages = plan.frameworks.flatMap((f) => f.dependencies.map((d) => d.name));
    const question = `${oneOf(names).replace(' or ', ' and ')} ${names.length === 1 ? 'is' : 'are'} not in package.json: install ${packages.join(', ')}?`;
    if (!(await prompts.ask(question, true))) declined = plan.frameworks;
  }
  const frameworkDependencies = plan.frameworks
    .filter((f) => !declined.includes(f))
    .flatMap((f) => f.dependencies);
  const commands: InstallCommand[] = installCommands(
    facts.packageManager,
    [...plan.dependencies, ...frameworkDependencies.filter((d) => !d.typesOnly)],
    [...plan.devDependencies, ...frameworkDependencies.filter((d) => d.typesOnly)],
    answers.newApp,
    pmVersion,
  );

  if (options.dryRun) {
    io.stdout(await dryRunText(plan, commands));
    return 0;
  }

  const writes = filesToWrite(plan);
  if (prompts && writes.length > 0) {
    prompts.say(`\n${planLines(plan).join('\n')}\n\n`);
    const more =
      options.install && commands.length > 0
        ? `, then run ${commands.map(formatCommand).join(' and ')}`
        : '';
    if (!(await prompts.ask(`Write ${plural(writes.length, 'file')}${more}?`, true))) {
      // A choice, not a failure: exit 0, as create-vite and shadcn do.
      prompts.say('Nothing written.\n');
      return 0;
    }
  }
  writeFilesAtomically(facts.root, writes);
  if (prompts) prompts.say('\n');

  let outcome: InstallOutcome = { pending: commands, fixes: [], failed: false };
  if (options.install && commands.length > 0) {
    io.stdout(`Installing dependencies with ${facts.packageManager}…\n`);
    // node:sqlite is built in: no package to check.
    const driver = driverFiles(answers.database, answers.driver).dependencies.find(
      (d) => !d.typesOnly,
    );
    outcome = await installAndCheck({
      root: facts.root,
      packageManager: facts.packageManager,
      version: pmVersion,
      commands,
      // Checked only when this run installed it: an app that had it already is the user's.
      driver: driver && (answers.newApp || plan.dependencies.includes(driver)) ? driver : undefined,
      stderr: io.stderr,
    });
    io.stdout('\n');
  }
  const report = finalReport({
    plan,
    packageManager: facts.packageManager,
    pendingInstall: outcome.pending,
    declinedFrameworks: declined,
    fixes: outcome.fixes,
    invokedFrom: io.cwd,
    expressMajor: dependencyMajor(facts, 'express'),
  });
  io.stdout(report);
  return outcome.failed ? 1 : 0;
}
