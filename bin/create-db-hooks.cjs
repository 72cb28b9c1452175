#!/usr/bin/env node
// CommonJS, like dist/cli.cjs: starting needs no ES module loader (see tsup.config.ts).
require('../dist/cli.cjs');
