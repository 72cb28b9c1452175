// A real PgBouncer in transaction-pooling mode in front of the test PostgreSQL, on a free loopback
// port. Debian's `pgbouncer` package provides the binary; `pgbouncerPath()` is undefined without it
// so tests can skip with a clear message.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, serverUser } from './postgres.ts';

export interface RunningPgBouncer {
  /** Same database and user as the upstream URL, through PgBouncer. */
  url: string;
  stop(): Promise<void>;
}

export function pgbouncerPath(): string | undefined {
  for (const candidate of ['pgbouncer', '/usr/sbin/pgbouncer']) {
    const found = spawnSync('sh', ['-c', `command -v ${candidate}`], { encoding: 'utf8' });
    if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  }
  return undefined;
}

export interface PgBouncerOptions {
  /** Server connections PgBouncer keeps per database/user pair. */
  poolSize: number;
}

export async function startPgBouncer(
  upstreamUrl: string,
  options: PgBouncerOptions,
): Promise<RunningPgBouncer> {
  const bin = pgbouncerPath();
  if (!bin) throw new Error('pgbouncer is not installed (Debian: apt-get install pgbouncer).');
  const upstream = new URL(upstreamUrl);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cdh-pgbouncer-'));
  const user = serverUser();
  if (user) chownSync(dir, user.uid, user.gid);
  const config = join(dir, 'pgbouncer.ini');
  writeFileSync(
    config,
    [
      '[databases]',
      `* = host=${upstream.hostname} port=${upstream.port}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize}`,
      'max_client_conn = 2000',
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      '',
    ].join('\n'),
  );
  writeFileSync(join(dir, 'users.txt'), `"${decodeURIComponent(upstream.username)}" ""\n`);
  const args = user ? ['-u', user.name, config] : [config];
  const child: ChildProcess = spawn(bin, args, { stdio: 'ignore' });
  // Killed when this process exits, even if stop() is never reached.
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);
  const stop = async () => {
    process.off('exit', onExit);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, 10_000);
  } catch (error) {
    await stop();
    throw error;
  }
  const url = new URL(upstreamUrl);
  url.port = String(port);
  return { url: url.toString(), stop };
}

async function waitForPort(port: number, timeoutMillis: number): Promise<void> {
  const deadline = Date.now() + timeoutMillis;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await sleep(50);
  }
  throw new Error(`pgbouncer did not start listening on 127.0.0.1:${port}`);
}
