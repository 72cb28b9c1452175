import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ejs from 'ejs';
import type { Plugin } from 'esbuild';
import { defineConfig, type Options } from 'tsup';
import { type ModuleFormat, prebuiltFile, recordConversions } from './src/cli/language.ts';
import { renderAppFile, renderGeneratedFiles } from './src/cli/render.ts';
import { databaseIds, orms, targetIds } from './src/cli/targets.ts';

const here = dirname(fileURLToPath(import.meta.url));

// The build, for startup speed (bench/cli): `npx create-db-hooks` installs this package alone
// (every dependency inlined, like create-vite) and a run loads as little as it can.
//
// - dist/cli.cjs: the command, CommonJS. Loading it needs no ES module loader, which alone costs
//   a Node process a noticeable share of its startup; commander, our code and the templates
//   (compiled at build time) are in this one file.
// - dist/vendor/*.js: the libraries only some runs need — the prompts (a terminal without
//   --yes), sucrase + prettier (JavaScript projects; Prettier's TypeScript parser for projects
//   with a style of their own), diff (--dry-run), EJS (only if a template was not compiled at
//   build time) — as ES modules that cli.cjs imports on first use.

/** Bare specifier → file under dist/vendor/ (without extension). */
const vendor: Record<string, string> = {
  '@inquirer/prompts': 'inquirer-prompts',
  diff: 'diff',
  ejs: 'ejs',
  sucrase: 'sucrase',
  'prettier/standalone': 'prettier-standalone',
  'prettier/plugins/babel': 'prettier-plugins-babel',
  'prettier/plugins/estree': 'prettier-plugins-estree',
  // Only for projects with a Prettier, Biome or .editorconfig style and no formatter installed.
  'prettier/plugins/typescript': 'prettier-plugins-typescript',
};

/** In cli.cjs, the vendor libraries stay dynamic imports of their own files. */
const vendorAsExternalFiles: Plugin = {
  name: 'vendor-as-external-files',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      const file = vendor[args.path];
      return file ? { path: `./vendor/${file}.js`, external: true } : undefined;
    });
  },
};

// Every template compiled by EJS at build time (client mode: standalone function sources), put in
// place of src/cli/precompiled.ts, so a run neither loads EJS nor compiles templates: about 20 ms
// of CPU per generating run (40 runs each on Node 20: 233 → 254 ms without it). The package
// still ships templates/ for people to read; from source, render.ts compiles them with EJS.
const precompiledTemplates: Plugin = {
  name: 'precompiled-templates',
  setup(build) {
    build.onLoad({ filter: /[\\/]src[\\/]cli[\\/]precompiled\.ts$/ }, () => {
      const root = join(here, 'templates');
      const compiled: Record<string, string> = {};
      for (const entry of readdirSync(root, { recursive: true, encoding: 'utf8' })) {
        if (!entry.endsWith('.ejs')) continue;
        const filename = join(root, entry);
        const fn = ejs.compile(readFileSync(filename, 'utf8'), {
          client: true,
          filename,
          // No line tracking or template copy for error messages: the tests render every template.
          compileDebug: false,
        });
        compiled[entry.split(sep).join('/')] = fn.toString();
      }
      return {
        contents: `export const precompiledTemplates = ${JSON.stringify(compiled)};`,
        loader: 'js',
        watchFiles: Object.keys(compiled).map((path) => join(root, path)),
      };
    });
  },
};

// The JavaScript a JavaScript project gets, made here from every source the package ships (each
// runtime file, index, adapter and sample app, in both module formats) by the same code a run
// would use, into dist/javascript/ by the hash of its TypeScript source. A run then reads it
// instead of loading sucrase and Prettier (language.ts), which cost a JavaScript project most
// of its start-up time.
async function prebuildJavaScript(): Promise<void> {
  const made = new Map<string, string>();
  recordConversions((source, moduleFormat, code) =>
    made.set(prebuiltFile(source, moduleFormat), code),
  );
  for (const database of databaseIds) {
    for (const moduleFormat of ['esm', 'cjs'] satisfies ModuleFormat[]) {
      const request = {
        targets: targetIds,
        orms: orms
          .filter((orm) => (orm.databases as readonly string[]).includes(database))
          .map((orm) => orm.id),
        database,
        style: { language: 'js' as const, moduleFormat },
        dir: 'src/db', // a new app's; generated files do not depend on it, the app entry does
        version: '',
      };
      await renderGeneratedFiles(request);
      for (const target of targetIds)
        await renderAppFile({ ...request, target, path: 'src/app.js' });
    }
  }
  for (const [file, code] of made) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, code);
  }
}

export default defineConfig(() => {
  // Two builds write into dist/ side by side; clear it once, before both.
  rmSync(join(here, 'dist'), { recursive: true, force: true });
  const common: Options = {
    target: 'node20',
    platform: 'node',
    minify: true, // less for V8 to parse on every start
    clean: false,
    noExternal: [/.*/],
    // Keep `node:` specifiers as written (Node 20 has them).
    removeNodeProtocol: false,
  };
  return [
    {
      ...common,
      entry: { cli: 'src/cli/main.ts' },
      format: ['cjs'],
      outExtension: () => ({ js: '.cjs' }),
      splitting: false,
      // paths.ts finds the package from import.meta.url; tsup shims it in CommonJS.
      shims: true,
      esbuildPlugins: [vendorAsExternalFiles, precompiledTemplates],
      onSuccess: prebuildJavaScript,
    },
    {
      ...common,
      entry: Object.fromEntries(
        Object.entries(vendor).map(([specifier, file]) => [
          `vendor/${file}`,
          fileURLToPath(import.meta.resolve(specifier)),
        ]),
      ),
      format: ['esm'],
      splitting: true,
      banner: {
        // Bundled CommonJS dependencies call require(); give the ES modules one.
        js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
      },
    },
  ];
});
