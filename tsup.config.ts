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
  esbuildPlugins: [lazyChildProcessForCommander],
  banner: {
    // Bundled CommonJS dependencies call require(); give the ESM bundle one.
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
});
