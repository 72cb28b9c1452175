// Runs one framework server in WORKERS processes sharing PORT (node:cluster), the way an app is
// scaled out on one machine. Tells its parent when every worker listens, and answers 'stats' with
// every worker's pool numbers.
import cluster from 'node:cluster';

const framework = process.env.FRAMEWORK ?? 'express';
const workers = Number(process.env.WORKERS ?? 2);

if (cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('message', (_worker, message) => {
    if (message?.ready && ++ready === workers) process.send?.({ ready: true });
  });
  process.on('message', async (message) => {
    if (message !== 'stats') return;
    const all = await Promise.all(
      Object.values(cluster.workers).map(
        (worker) =>
          new Promise((resolve) => {
            const onMessage = (reply) => {
              if (!reply?.stats) return;
              worker.off('message', onMessage);
              resolve(reply.stats);
            };
            worker.on('message', onMessage);
            worker.send('stats');
          }),
      ),
    );
    process.send?.({ stats: all });
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  // The parent went away without stopping us (killed, crashed): take the workers down too.
  process.once('disconnect', stop);
} else {
  await import(`./${framework}.mjs`);
}
