// Turns the one TypeScript source of every generated file (templates and the runtime) into what
// the project speaks: TypeScript as written, JavaScript ESM with the types stripped, or
// JavaScript CommonJS. Sucrase strips the types, keeping comments and blank lines; the ESM →
// CommonJS step is a small rewrite that only has to understand the import/export forms our own
// sources use; Prettier then lays the result out as a person would have (tests compile and run
// every variant). Both run at build time for every source the package ships (tsup.config.ts),
// so a run for a JavaScript project reads the result from dist/javascript/ and loads neither;
// they load at run time only for a source the build did not see (e.g. an app entry under a
// custom --dir).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fingerprint } from './fingerprint.js';
import { packageRoot } from './paths.js';
import { precompiledTemplates } from './precompiled.js';

export type Language = 'ts' | 'js';
export type ModuleFormat = 'esm' | 'cjs';

export interface OutputStyle {
  language: Language;
  moduleFormat: ModuleFormat;
}

/** File extension of generated source files for a project. */
export function sourceExtension(style: OutputStyle): '.ts' | '.js' {
  return style.language === 'ts' ? '.ts' : '.js';
}

/**
 * The extension of relative import specifiers. A TypeScript file in a CommonJS package (no
 * "type": "module") is CommonJS under every tsconfig: tsc compiles its imports to require(), and
 * ts-node (without its experimentalResolver) and jest resolve them as require() does, finding
 * `./index` but not `./index.js`. Extensionless, it also loads under tsc's output, tsx, vitest
 * and bundlers, and TypeScript asks for extensions only in ES modules. Everywhere else (ES
 * modules, and JavaScript, which Node runs as written) it is `.js`.
 */
export function importExtension(style: OutputStyle): '' | '.js' {
  return style.language === 'ts' && style.moduleFormat === 'cjs' ? '' : '.js';
}

/** Quoted relative specifiers ending in .js (imports, and the examples in comments). */
const relativeJsSpecifier = /(['"])(\.{1,2}\/[^'"\s]*)\.js\1/g;

/** Gives the relative specifiers of TypeScript source the project's extension. */
export function withImportExtension(source: string, style: OutputStyle): string {
  if (importExtension(style) === '.js') return source;
  return source.replace(relativeJsSpecifier, '$1$2$1');
}

/** Where the build put the JavaScript made from `source`: named by its fingerprint and module format. */
export function prebuiltFile(source: string, moduleFormat: ModuleFormat): string {
  return join(packageRoot, 'dist', 'javascript', `${fingerprint(source)}.${moduleFormat}.js`);
}

let recorder: ((source: string, moduleFormat: ModuleFormat, code: string) => void) | undefined;

/** The build's hook: told every source converted at run time, to store it in dist/javascript/. */
export function recordConversions(
  record: (source: string, moduleFormat: ModuleFormat, code: string) => void,
): void {
  recorder = record;
}

/** Converts TypeScript ESM source into the project's language and module format. */
export async function toProjectLanguage(source: string, style: OutputStyle): Promise<string> {
  if (style.language === 'ts') return tidy(withImportExtension(source, style));
  // Only the bundle reads dist/javascript/: the same build made both. Run from source (tests),
  // this file may have changed since the last build, so it always converts.
  if (precompiledTemplates !== undefined) {
    try {
      return readFileSync(prebuiltFile(source, style.moduleFormat), 'utf8');
    } catch {
      // Not made at build time: convert now.
    }
  }
  const code = await convert(source, style.moduleFormat);
  recorder?.(source, style.moduleFormat, code);
  return code;
}

/** TypeScript → JavaScript in that module format, laid out by Prettier. */
async function convert(source: string, moduleFormat: ModuleFormat): Promise<string> {
  const [sucrase, prettier, babel, estree] = await Promise.all([
    import('sucrase'),
    import('prettier/standalone'),
    import('prettier/plugins/babel'),
    import('prettier/plugins/estree'),
  ]);
  // sucrase is CommonJS: bundled as an ES module (dist/vendor) its exports are the default one.
  const { transform } = (sucrase as unknown as { default?: typeof sucrase }).default ?? sucrase;
  // The file's opening comment is kept apart: sucrase drops it with a leading `import type`.
  const { header, body } = splitHeader(dropTypeOnlyComments(source));
  const esm =
    header +
    transform(body, {
      transforms: ['typescript'],
      disableESTransforms: true,
      keepUnusedImports: false,
    }).code;
  const code = moduleFormat === 'cjs' ? esmToCommonJs(esm) : esm;
  const formatted = await prettier.format(code, {
    parser: 'babel',
    plugins: [babel, estree],
    singleQuote: true,
    trailingComma: 'all',
    printWidth: 100,
  });
  return tidy(formatted);
}

/** The comment lines (and blank lines) a file opens with, and the rest. */
function splitHeader(source: string): { header: string; body: string } {
  const lines = source.split('\n');
  let end = 0;
  while (end < lines.length && (lines[end]!.trim() === '' || commentLine.test(lines[end]!))) end++;
  return { header: lines.slice(0, end).join('\n') + '\n', body: lines.slice(end).join('\n') };
}

const typeOnlyDeclaration = /^\s*(export\s+)?(declare\s+)?(interface|type)\s+\w+/;
const commentLine = /^\s*(\/\/|\/\*\*?|\*|\*\/)/;

/**
 * Removes the comments written above interfaces and type aliases, which describe declarations
 * that do not exist in JavaScript and would otherwise be left pointing at nothing.
 */
export function dropTypeOnlyComments(source: string): string {
  const lines = source.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!typeOnlyDeclaration.test(lines[i]!)) continue;
    let start = i;
    while (start > 0 && commentLine.test(lines[start - 1]!)) start--;
    lines.fill('\u0000', start, i);
  }
  return lines.filter((line) => line !== '\u0000').join('\n');
}

const importDefault = /^import (\w+) from ('[^']+');$/;
const importNamespace = /^import \* as (\w+) from ('[^']+');$/;
const importNamed = /^import \{([^}]*)\} from ('[^']+');$/;
const importBare = /^import ('[^']+');$/;
const exportDeclaration = /^export\s+(?:(async function|function|class|const|let)\s+(\w+))/;
const exportList = /^export \{([^}]*)\};$/;
const exportFrom = /^export \{([^}]*)\} from ('[^']+');$/;
const exportAll = /^export \* from ('[^']+');$/;

/** Rewrites the ESM forms our sources use into CommonJS. Anything else is a bug in a template. */
export function esmToCommonJs(source: string): string {
  const exported: string[] = [];
  // Multi-line named imports and re-exports are joined first so each is one line.
  const joined = source.replace(
    /^(import|export) \{([^}]*)\} from/gm,
    (_m, verb, names: string) => {
      return `${verb} {${names.replace(/\s+/g, ' ')}} from`;
    },
  );
  const lines = joined.split('\n').map((line) => {
    let match = importDefault.exec(line) ?? importNamespace.exec(line);
    if (match) return `const ${match[1]} = require(${match[2]});`;
    match = importNamed.exec(line);
    if (match) {
      const names = splitNames(match[1]!).map((name) => name.replace(/^(\w+) as (\w+)$/, '$1: $2'));
      return `const { ${names.join(', ')} } = require(${match[2]});`;
    }
    match = importBare.exec(line);
    if (match) return `require(${match[1]});`;
    match = exportFrom.exec(line);
    if (match) {
      const names = splitNames(match[1]!);
      exported.push(...names);
      return `const { ${names.join(', ')} } = require(${match[2]});`;
    }
    match = exportAll.exec(line);
    if (match) {
      exported.push(`...require(${match[1]})`);
      return '';
    }
    match = exportList.exec(line);
    if (match) {
      exported.push(...splitNames(match[1]!));
      return '';
    }
    match = exportDeclaration.exec(line);
    if (match) {
      exported.push(match[2]!);
      return line.replace(/^export\s+/, '');
    }
    if (/^export\b/.test(line) || /^import\b/.test(line)) {
      throw new Error(`Cannot convert to CommonJS: ${line}`);
    }
    return line;
  });
  const body = lines.join('\n').trimEnd();
  const exportsLine = exported.length > 0 ? `\n\nmodule.exports = { ${exported.join(', ')} };` : '';
  return `'use strict';\n\n${body}${exportsLine}\n`;
}

function splitNames(list: string): string[] {
  return list
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
}

/** Collapses the blank runs and trailing spaces that template tags and stripped types leave. */
export function tidy(source: string): string {
  return `${source
    .replace(/[ \t]+$/gm, '')
    .replace(/\n{3,}/g, '\n\n')
    .replace(/^\n+/, '')
    .trimEnd()}\n`;
}
