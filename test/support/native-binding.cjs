// Preloaded (NODE_OPTIONS=--require) into every process of a test run on another Node.js line
// than the one `npm install` built better-sqlite3 for: when better-sqlite3 loads its native file
// from node_modules, load the build made for this line instead (test/support/node-lines.ts).
// Only that one file is redirected; everything else loads as usual.
const { realpathSync } = require('node:fs');

const installed = process.env.CDH_BETTER_SQLITE3_INSTALLED;
const build = process.env.CDH_BETTER_SQLITE3_BUILD;
if (installed && build) {
  const installedReal = realpathSync(installed);
  const dlopen = process.dlopen;
  process.dlopen = function dlopenForThisLine(module, filename, ...rest) {
    let target = filename;
    try {
      if (realpathSync(filename) === installedReal) target = build;
    } catch {
      // Not a file we know: load it as asked.
    }
    return dlopen.call(this, module, target, ...rest);
  };
}
