import { readdirSync, readFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import ejs from 'ejs';
import type { Plugin } from 'esbuild';
import { defineConfig } from 'tsup';

// commander requires node:child_process at load time, for git-style executable subcommands this
// CLI does not have. Loading it pulls in net, dgram and streams: milliseconds of startup on every
// run. Give commander a stand-in that loads the real module on first use instead.
const lazyChildProcessForCommander: Plugin = {
  name: 'lazy-child-process-for-commander',
  setup(build) {
    build.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      /[\\/]node_modules[\\/]commander[\\/]/.test(args.importer)
        ? { path: 'lazy-child-process', namespace: 'lazy-builtin' }
        : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, () => ({
      contents:
        "module.exports = new Proxy({}, { get: (_target, key) => require('node:child_process')[key] });",
      loader: 'js',
    }));
  },
};

// Every template compiled by EJS at build time (client mode: standalone function sources), put in
// place of src/cli/precompiled.ts, so a run neither loads EJS nor compiles templates. The package
// still ships templates/ for people to read; from source, render.ts compiles them with EJS.
const precompiledTemplates: Plugin = {
  name: 'precompiled-templates',
  setup(build) {
    build.onLoad({ filter: /[\\/]src[\\/]cli[\\/]precompiled\.ts$/ }, () => {
      const root = join(import.meta.dirname, 'templates');
      const compiled: Record<string, string> = {};
      for (const entry of readdirSync(root, { recursive: true, encoding: 'utf8' })) {
        if (!entry.endsWith('.ejs')) continue;
        const filename = join(root, entry);
        const fn = ejs.compile(readFileSync(filename, 'utf8'), { client: true, filename });
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

// One ESM bundle with every dependency inlined, like create-vite: `npx create-db-hooks` installs
// nothing but this package and starts fast. Code only some runs need (prompts, diffs, the
// TypeScript stripper) sits behind dynamic imports, so esbuild splits it into lazy chunks.
// Minified: less for V8 to parse on every start.
export default defineConfig({
  entry: { cli: 'src/cli/main.ts' },
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  splitting: true,
  minify: true,
  clean: true,
  noExternal: [/.*/],
  // Keep `node:` specifiers as written (Node 20 has them), so the plugin below sees commander's.
  removeNodeProtocol: false,
  esbuildPlugins: [lazyChildProcessForCommander, precompiledTemplates],
  banner: {
    // Bundled CommonJS dependencies call require(); give the ESM bundle one.
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
});
