// A small HTTP client over node:http, one connection per request, so a test can hang up in the
// middle of a request (destroy the socket) as a real client would.
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface RequestOptions {
  method?: string;
  json?: unknown;
  /** Hang up when this promise resolves (e.g. once the handler is known to be running). */
  abortWhen?: Promise<unknown>;
  /** Hang up as soon as the first chunk of the body arrived. */
  abortAfterFirstChunk?: boolean;
  /** Send the headers, then the body in a later packet: the server reads it in another turn. */
  bodyLater?: boolean;
}

/** Resolves with the reply, or with 'aborted' when the options made the client hang up. */
export function send(url: string, options: RequestOptions = {}): Promise<Reply | 'aborted'> {
  return new Promise((resolve, reject) => {
    const body = options.json === undefined ? undefined : JSON.stringify(options.json);
    const req = httpRequest(url, {
      method: options.method ?? 'GET',
      agent: false,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
    });
    let aborted = false;
    const hangUp = () => {
      aborted = true;
      req.destroy();
      resolve('aborted');
    };
    options.abortWhen?.then(() => {
      if (!req.destroyed) hangUp();
    }, reject);
    req.once('error', (error) => {
      if (!aborted) reject(error);
    });
    req.once('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (options.abortAfterFirstChunk && !aborted) hangUp();
      });
      res.once('error', (error) => {
        if (!aborted) reject(error);
      });
      res.once('end', () => {
        if (!aborted) resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text });
      });
    });
    if (options.bodyLater) {
      req.flushHeaders();
      setTimeout(() => req.end(body), 50);
    } else {
      req.end(body);
    }
  });
}

/** send() for requests that are not aborted. */
export async function fetchReply(url: string, options: RequestOptions = {}): Promise<Reply> {
  const reply = await send(url, options);
  if (reply === 'aborted') throw new Error(`unexpected abort: ${url}`);
  return reply;
}

export async function getJson<T>(url: string): Promise<T> {
  const reply = await fetchReply(url);
  if (reply.status !== 200) throw new Error(`GET ${url}: ${reply.status} ${reply.body}`);
  return JSON.parse(reply.body) as T;
}

/**
 * A hostile HTTP/1.1 client: writes `paths` as pipelined GET requests on one raw socket without
 * waiting for answers, then destroys the socket once `hangUpWhen` resolves.
 */
export async function pipelineThenHangUp(
  url: string,
  paths: string[],
  hangUpWhen: Promise<unknown>,
): Promise<void> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => {}); // the reset we cause
  socket.on('data', () => {}); // answers, if any arrive first, are not read
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(paths.map((path) => `GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`).join(''));
  try {
    await hangUpWhen;
  } finally {
    socket.destroy();
  }
}
