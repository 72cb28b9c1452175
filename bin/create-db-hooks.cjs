#!/usr/bin/env node
// CommonJS, like dist/cli.cjs: starting needs no ES module loader (see tsup.config.ts).
// Node 22.1+ keeps compiled code between runs, as npm and tsc do; older Node has no such API.
require('node:module').enableCompileCache?.();
require('../dist/cli.cjs');
