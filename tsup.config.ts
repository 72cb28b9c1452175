import { defineConfig } from 'tsup';

// One ESM bundle with every dependency inlined, like create-vite: `npx create-db-hooks` installs
// nothing but this package and starts fast. Code only some runs need (prompts, diffs, the
// TypeScript stripper) sits behind dynamic imports, so esbuild splits it into lazy chunks.
export default defineConfig({
  entry: { cli: 'src/cli/main.ts' },
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  splitting: true,
  clean: true,
  noExternal: [/.*/],
  banner: {
    // Bundled CommonJS dependencies call require(); give the ESM bundle one.
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
});
