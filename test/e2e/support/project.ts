// One end-to-end case: a fresh project directory with the generated files, a test app and the
// sample app rendered in one language, its node_modules linked to the shared install, a type
// check for TypeScript, and the apps started as child processes on 127.0.0.1.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import ejs from 'ejs';
import { toProjectLanguage } from '../../../src/cli/language.ts';
import {
  type GenerationRequest,
  renderAppFile,
  renderGeneratedFiles,
} from '../../../src/cli/render.ts';
import type { DatabaseId, TargetId } from '../../../src/cli/targets.ts';
import { binary, linkDependencies, repoRoot } from './deps.ts';

export type Variant = 'ts' | 'js-esm' | 'js-cjs';

export interface Case {
  target: TargetId;
  database: DatabaseId;
  /** SQLite on Node's built-in driver instead of better-sqlite3. */
  driver?: 'node:sqlite';
  variant: Variant;
  /**
   * Express and Koa: the framework's major version. The older one (Express 4, Koa 2) is
   * installed under an alias (express4, koa2) and linked in under the real name.
   */
  major?: number;
  /** Target hooks only: run the README's recipe for this framework (JavaScript ESM). */
  recipe?: 'h3' | 'hapi' | 'restify';
  /** Target nestjs only: the HTTP platform (@nestjs/platform-express or -fastify). */
  platform?: 'express' | 'fastify';
}

export function caseName(c: Case): string {
  const target = c.recipe
    ? `${c.recipe} recipe`
    : `${c.target}${c.major ?? ''}${c.platform ? `-${c.platform}` : ''}`;
  return `${target} × ${c.driver ?? c.database} × ${c.variant}`;
}

export interface Project {
  dir: string;
  ext: '.ts' | '.js';
  /** The generated sources, by path relative to the project. */
  files: Map<string, string>;
  remove(): void;
}

const appsDir = join(repoRoot, 'test', 'e2e', 'apps');

/**
 * A fresh folder under .tmp holding the generated files (src/db) for `request`, in the
 * variant's language; `write` adds more files and records them in `files`.
 */
export async function generatedProject(
  prefix: string,
  variant: Variant,
  request: Pick<GenerationRequest, 'targets' | 'orms' | 'database' | 'driver'>,
) {
  mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
  const dir = mkdtempSync(join(repoRoot, '.tmp', prefix));
  const style =
    variant === 'ts'
      ? ({ language: 'ts', moduleFormat: 'esm' } as const)
      : ({ language: 'js', moduleFormat: variant === 'js-cjs' ? 'cjs' : 'esm' } as const);
  const ext: '.ts' | '.js' = style.language === 'ts' ? '.ts' : '.js';
  const files = new Map<string, string>();
  const write = (path: string, content: string) => {
    files.set(path, content);
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  };
  const generated = await renderGeneratedFiles({
    ...request,
    style,
    dir: 'src/db',
    version: '0.0.0-e2e',
  });
  for (const file of generated) write(file.path, file.content);
  // node:sqlite's types, as @types/node 22 (what the CLI gives TypeScript projects) has them:
  // these projects type-check against the repository's @types/node 20, which has none.
  if (request.driver === 'node:sqlite' && style.language === 'ts') {
    const types = readFileSync(join(repoRoot, 'src', 'types', 'node-sqlite.d.ts'), 'utf8');
    mkdirSync(join(dir, 'src'), { recursive: true });
    writeFileSync(join(dir, 'src', 'node-sqlite.d.ts'), types);
  }
  return { dir, style, ext, files, write };
}

export async function createProject(c: Case): Promise<Project> {
  const { dir, style, ext, files, write } = await generatedProject('e2e-', c.variant, {
    targets: [c.target],
    database: c.database,
    driver: c.driver,
  });
  const locals = {
    database: c.database,
    driver: c.driver,
    target: c.target,
    language: style.language,
    moduleFormat: style.moduleFormat,
    version: '0.0.0-e2e',
    expressMajor: c.target === 'express' ? c.major : undefined,
    platform: c.platform,
  };
  const renderApp = async (name: string) => {
    const file = join(appsDir, `${name}.ts.ejs`);
    const source = ejs.render(readFileSync(file, 'utf8'), locals, { filename: file });
    return toProjectLanguage(source, style);
  };
  write(`src/scenarios${ext}`, await renderApp('scenarios'));
  if (c.recipe) {
    const recipes = join(appsDir, 'recipes');
    write('src/test-app.js', readFileSync(join(recipes, `${c.recipe}.js`), 'utf8'));
    write('src/scope-requests.js', readFileSync(join(recipes, 'scope-requests.js'), 'utf8'));
  } else {
    write(`src/test-app${ext}`, await renderApp(c.target));
  }
  // The sample app the CLI writes into an empty directory.
  const app = await renderAppFile({
    targets: [c.target],
    target: c.target,
    database: c.database,
    driver: c.driver,
    style,
    dir: 'src/db',
    path: `src/app${ext}`,
    version: '0.0.0-e2e',
  });
  write(app.path, app.content);

  write(
    'package.json',
    `${JSON.stringify(
      {
        name: 'e2e-app',
        private: true,
        type: style.moduleFormat === 'cjs' ? 'commonjs' : 'module',
      },
      null,
      2,
    )}\n`,
  );
  if (style.language === 'ts') {
    write(
      'tsconfig.json',
      `${JSON.stringify(
        {
          compilerOptions: {
            target: 'ES2022',
            lib: ['ES2022'],
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            strict: true,
            noEmit: true,
            skipLibCheck: true,
            verbatimModuleSyntax: true,
            noUnusedLocals: true,
            noUnusedParameters: true,
            types: ['node'],
            // As `nest new` sets them: the NestJS apps are written with decorators.
            ...(c.target === 'nestjs' && {
              experimentalDecorators: true,
              emitDecoratorMetadata: true,
            }),
          },
          include: ['src'],
        },
        null,
        2,
      )}\n`,
    );
  }
  const legacy: Record<string, number | undefined> = { express: 4, koa: 2 };
  const alias = `${c.target}${c.major}`;
  linkDependencies(
    dir,
    c.major !== undefined && c.major === legacy[c.target]
      ? { [c.target]: alias, [`@types/${c.target}`]: `@types/${alias}` }
      : {},
  );
  return {
    dir,
    ext,
    files,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const execFileAsync = promisify(execFile);

/** `tsc --strict --noEmit` over the project; resolves with the compiler's output on failure. */
export async function typeCheck(project: Project): Promise<string | undefined> {
  try {
    await execFileAsync(process.execPath, [binary('typescript', 'bin/tsc'), '-p', project.dir]);
    return undefined;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    return `${stdout ?? ''}${stderr ?? ''}` || String(error);
  }
}

export interface RunningApp {
  url: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM; resolves with the exit code (null after a kill on timeout). */
  stop(timeoutMillis?: number): Promise<number | null>;
}

const tsxLoader = import.meta.resolve('tsx');

/**
 * Starts src/<entry> of the project with PORT=0 and waits for the URL it prints. `nodeArgs` go
 * to node before the file (e.g. --unhandled-rejections=warn).
 */
export async function startApp(
  project: Project,
  entry: string,
  env: Record<string, string | undefined>,
  nodeArgs: string[] = [],
): Promise<RunningApp> {
  const file = join('src', `${entry}${project.ext}`);
  const args = [...nodeArgs, ...(project.ext === '.ts' ? ['--import', tsxLoader, file] : [file])];
  const child = spawn(process.execPath, args, {
    cwd: project.dir,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${entry} did not print its URL within 30 s:\n${output}`));
    }, 30_000);
    const onData = () => {
      const match = /http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[0]);
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${entry} exited with ${code} before listening:\n${output}`));
    });
  });
  return {
    url,
    child,
    output: () => output,
    async stop(timeoutMillis = 10_000) {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMillis);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
