// The project's own code style: generated files are formatted the way the project formats its
// code, so a project without semicolons gets none. In order of preference: the project's own
// Prettier with its config, the project's own Biome with its biome.json, and, when the tool
// itself is not installed, our bundled Prettier told the same settings (from .prettierrc,
// biome.json or .editorconfig); a project that formats with ESLint (standard, or an ESLint
// config with stylistic, prettier or standard rules) gets its own ESLint's fixes. Nothing here loads unless the project has such a config, and
// a formatter that fails leaves the file as generated.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Formats one generated file; `path` is project-relative. */
export type Formatter = (path: string, content: string) => Promise<string>;

const prettierConfigFiles = [
  '.prettierrc',
  '.prettierrc.json',
  '.prettierrc.json5',
  '.prettierrc.yaml',
  '.prettierrc.yml',
  '.prettierrc.toml',
  '.prettierrc.js',
  '.prettierrc.cjs',
  '.prettierrc.mjs',
  '.prettierrc.ts',
  'prettier.config.js',
  'prettier.config.cjs',
  'prettier.config.mjs',
  'prettier.config.ts',
];
const biomeConfigFiles = ['biome.json', 'biome.jsonc'];
const eslintConfigFiles = [
  'eslint.config.js',
  'eslint.config.mjs',
  'eslint.config.cjs',
  'eslint.config.ts',
  'eslint.config.mts',
  'eslint.config.cts',
];
/** ESLint-based styles with a lintText() of their own (standard-engine). */
const standardStyles = ['standard', 'semistandard'];

/** Prettier options we understand; anything else in a config is left to the real Prettier. */
interface PrettierOptions {
  semi?: boolean;
  singleQuote?: boolean;
  trailingComma?: 'all' | 'es5' | 'none';
  printWidth?: number;
  tabWidth?: number;
  useTabs?: boolean;
  arrowParens?: 'always' | 'avoid';
  bracketSpacing?: boolean;
  endOfLine?: 'lf' | 'crlf' | 'cr' | 'auto';
}

/** How the project formats code, or undefined when it says nothing about it. */
export function projectFormatter(
  root: string,
  packageJson: Record<string, unknown> | undefined,
): Formatter | undefined {
  const has = (file: string) => existsSync(join(root, file));
  const prettierConfig = prettierConfigFiles.find(has);
  if (prettierConfig || packageJson?.prettier !== undefined) {
    const own = resolveFromProject(root, 'prettier');
    if (own) return ownPrettier(root, own);
    const options = readPrettierConfig(root, prettierConfig, packageJson?.prettier);
    // A config only Prettier can read (.prettierrc.js) and no Prettier to read it: leave it.
    return options && bundledPrettier(options);
  }
  const biomeConfig = biomeConfigFiles.find(has);
  if (biomeConfig) {
    const own = resolveFromProject(root, '@biomejs/biome/bin/biome');
    if (own) return ownBiome(root, own);
    const options = biomeToPrettier(readJsonc(join(root, biomeConfig)));
    return options && bundledPrettier(options);
  }
  const linter = eslintFormatter(root, packageJson, has);
  if (linter) return linter;
  if (has('.editorconfig')) {
    const options = editorconfigToPrettier(readFileSync(join(root, '.editorconfig'), 'utf8'));
    // The house style already matches the common .editorconfig (2 spaces, LF): format only
    // when it asks for something else.
    return Object.keys(options).length > 0
      ? bundledPrettier({ ...houseStyle, ...options })
      : undefined;
  }
  return undefined;
}

/** How the generated files are laid out before any project style (see language.ts). */
const houseStyle: PrettierOptions = { singleQuote: true, trailingComma: 'all', printWidth: 100 };

function resolveFromProject(root: string, specifier: string): string | undefined {
  try {
    return createRequire(join(root, 'package.json')).resolve(specifier);
  } catch {
    return undefined;
  }
}

/** Without a formatter error: the file stays as generated. */
function safely(format: Formatter): Formatter {
  return async (path, content) => {
    try {
      return await format(path, content);
    } catch {
      return content;
    }
  };
}

function ownPrettier(root: string, entry: string): Formatter {
  type Prettier = {
    format: (source: string, options: object) => string | Promise<string>;
    resolveConfig: (file: string, options?: object) => Promise<object | null> | object | null;
  };
  let loaded: Promise<Prettier> | undefined;
  return safely(async (path, content) => {
    // Prettier 3 is an ES module; Prettier 2 is CommonJS, whose exports arrive as `default`.
    loaded ??= import(pathToFileURL(entry).href).then(
      (mod: Partial<Prettier> & { default?: Prettier }) =>
        (mod.format ? mod : mod.default) as Prettier,
    );
    const prettier = await loaded;
    const filepath = join(root, path);
    const config = (await prettier.resolveConfig(filepath, { editorconfig: true })) ?? {};
    return prettier.format(content, { ...config, filepath });
  });
}

function ownBiome(root: string, bin: string): Formatter {
  return safely(async (path, content) => {
    const { spawnSync } = await import('node:child_process');
    const result = spawnSync(process.execPath, [bin, 'format', `--stdin-file-path=${path}`], {
      cwd: root,
      input: content,
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (result.status !== 0 || result.stdout === '') throw new Error(result.stderr);
    return result.stdout;
  });
}

type LintResult = { output?: string };

/**
 * The project's ESLint fixes, where the project formats with ESLint: `standard` (its own
 * lintText, with its bundled ESLint), or the project's ESLint with a config that has formatting
 * rules (@stylistic, eslint-plugin-prettier, neostandard...). Other ESLint configs only lint.
 */
function eslintFormatter(
  root: string,
  packageJson: Record<string, unknown> | undefined,
  has: (file: string) => boolean,
): Formatter | undefined {
  const deps = {
    ...(packageJson?.dependencies as object | undefined),
    ...(packageJson?.devDependencies as object | undefined),
  };
  const style = standardStyles.find((name) => name in deps);
  const standard = style && resolveFromProject(root, style);
  if (standard) {
    type Standard = {
      lintText: (text: string, options: object) => Promise<LintResult[]> | LintResult[];
    };
    let engine: Promise<Standard> | undefined;
    return safely(async (path, content) => {
      // standard 17 is an ES module whose default export is the engine; older ones CommonJS.
      engine ??= import(pathToFileURL(standard).href).then(
        (mod: Standard & { default?: Standard }) => mod.default ?? mod,
      );
      // Its ESLint lints nothing outside its cwd: the project's, wherever the CLI runs (-C).
      const [result] = await (await engine).lintText(content, {
        fix: true,
        cwd: root,
        filename: join(root, path),
      });
      return result?.output ?? content;
    });
  }
  const config = eslintConfigFiles.find(has);
  if (!config || !/stylistic|prettier|standard/.test(readFileSync(join(root, config), 'utf8'))) {
    return undefined;
  }
  const eslint = resolveFromProject(root, 'eslint');
  if (!eslint) return undefined;
  type Linter = { lintText: (text: string, options: object) => Promise<LintResult[]> };
  type ESLint = new (options: object) => Linter;
  let linter: Promise<Linter> | undefined;
  return safely(async (path, content) => {
    // ESLint is CommonJS: imported, its exports may also arrive as `default`.
    linter ??= import(pathToFileURL(eslint).href).then(
      (mod: { ESLint?: ESLint; default?: { ESLint: ESLint } }) =>
        new (mod.ESLint ?? mod.default!.ESLint)({ cwd: root, fix: true }),
    );
    const [result] = await (await linter).lintText(content, { filePath: join(root, path) });
    return result?.output ?? content;
  });
}

function bundledPrettier(options: PrettierOptions): Formatter {
  return safely(async (path, content) => {
    const [prettier, babel, estree, typescript] = await Promise.all([
      import('prettier/standalone'),
      import('prettier/plugins/babel'),
      import('prettier/plugins/estree'),
      import('prettier/plugins/typescript'),
    ]);
    return prettier.format(content, {
      ...options,
      parser: extname(path) === '.ts' ? 'typescript' : 'babel',
      plugins: [babel, estree, typescript],
    });
  });
}

function readJsonc(file: string): unknown {
  try {
    // Comments and trailing commas, as biome.jsonc and tsconfig-style files allow.
    const text = readFileSync(file, 'utf8')
      .replace(/("(?:\\.|[^"\\])*")|\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (_m, string) => string ?? '')
      .replace(/,(\s*[}\]])/g, '$1');
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** .prettierrc as JSON or simple YAML, or package.json "prettier"; undefined when unreadable. */
export function readPrettierConfig(
  root: string,
  file: string | undefined,
  fromPackageJson: unknown,
): PrettierOptions | undefined {
  if (file === undefined) {
    return typeof fromPackageJson === 'object' && fromPackageJson !== null
      ? (fromPackageJson as PrettierOptions)
      : undefined;
  }
  if (!/^\.prettierrc(\.json|\.json5|\.ya?ml)?$/.test(file)) return undefined;
  const text = readFileSync(join(root, file), 'utf8');
  const json = readJsonc(join(root, file));
  if (typeof json === 'object' && json !== null) return json as PrettierOptions;
  // YAML: the flat `key: value` form every .prettierrc.yaml uses.
  const options: Record<string, unknown> = {};
  for (const line of text.split('\n')) {
    const match = /^\s*(\w+)\s*:\s*(.+?)\s*$/.exec(line.replace(/\s+#.*$/, ''));
    if (!match) continue;
    const raw = match[2]!.replace(/^['"](.*)['"]$/, '$1');
    options[match[1]!] =
      raw === 'true' ? true : raw === 'false' ? false : /^\d+$/.test(raw) ? Number(raw) : raw;
  }
  return Object.keys(options).length > 0 ? (options as PrettierOptions) : undefined;
}

/** biome.json's formatter settings as Prettier options, over Biome's own defaults. */
export function biomeToPrettier(config: unknown): PrettierOptions | undefined {
  if (typeof config !== 'object' || config === null) return undefined;
  const c = config as {
    formatter?: {
      enabled?: boolean;
      indentStyle?: string;
      indentWidth?: number;
      lineWidth?: number;
    };
    javascript?: {
      formatter?: {
        quoteStyle?: string;
        semicolons?: string;
        trailingCommas?: string;
        arrowParentheses?: string;
        indentStyle?: string;
        indentWidth?: number;
        lineWidth?: number;
        bracketSpacing?: boolean;
      };
    };
  };
  if (c.formatter?.enabled === false) return undefined;
  const general = c.formatter ?? {};
  const js = c.javascript?.formatter ?? {};
  const indentStyle = js.indentStyle ?? general.indentStyle ?? 'tab';
  return {
    useTabs: indentStyle === 'tab',
    tabWidth: js.indentWidth ?? general.indentWidth ?? 2,
    printWidth: js.lineWidth ?? general.lineWidth ?? 80,
    singleQuote: (js.quoteStyle ?? 'double') === 'single',
    semi: (js.semicolons ?? 'always') === 'always',
    trailingComma: (js.trailingCommas ?? 'all') as PrettierOptions['trailingComma'],
    arrowParens: js.arrowParentheses === 'asNeeded' ? 'avoid' : 'always',
    bracketSpacing: js.bracketSpacing ?? true,
  };
}

/** .editorconfig settings for JavaScript and TypeScript files, as Prettier reads them. */
export function editorconfigToPrettier(text: string): PrettierOptions {
  const options: PrettierOptions = {};
  let applies = true; // keys before any section apply to every file
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const section = /^\[(.*)\]$/.exec(line);
    if (section) {
      const glob = section[1]!;
      applies = glob === '*' || glob === '**' || /\b(ts|js)\b/.test(glob);
      continue;
    }
    const pair = /^([\w-]+)\s*=\s*(.+)$/.exec(line);
    if (!pair || !applies) continue;
    const [key, value] = [pair[1]!.toLowerCase(), pair[2]!.toLowerCase()];
    if (key === 'indent_style' && value === 'tab') options.useTabs = true;
    if (key === 'indent_style' && value === 'space') delete options.useTabs;
    if ((key === 'indent_size' || key === 'tab_width') && /^\d+$/.test(value) && value !== '2') {
      options.tabWidth = Number(value);
    }
    if (key === 'max_line_length' && /^\d+$/.test(value) && value !== '100') {
      options.printWidth = Number(value);
    }
    if (key === 'quote_type' && value === 'double') options.singleQuote = false;
    if (key === 'end_of_line' && value === 'crlf') options.endOfLine = 'crlf';
  }
  return options;
}
