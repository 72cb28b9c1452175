// Templates compiled to JavaScript at build time: tsup.config.ts replaces this module in the
// bundle with every templates/**/*.ejs compiled by EJS (client mode: each a standalone function
// source), so a run does not load and run the EJS compiler. Running from source (tests, tsx)
// there are none, and render.ts compiles the templates with EJS as it reads them; language.ts
// also takes their presence to mean "running the bundle" (dist/javascript/ is then current).

/** Template path relative to templates/ → source of its compiled EJS client function. */
export const precompiledTemplates: Readonly<Record<string, string>> | undefined = undefined;
