// The console's HTTP server: the management API under /api/v1, the HTML console, sign-in, and the rules every
// request passes first (authentication, read-only tokens, CSRF, security headers, one error shape).
import { readFileSync } from 'node:fs';
import fastifySwagger from '@fastify/swagger';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import { isRelayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Operations } from '../ops/operations.ts';
import { ApiError, registerApi } from './api.ts';
import {
  bearerOf,
  createLoginLimiter,
  createSessions,
  createTokenCheck,
  sameOrigin,
  type LoginLimiter,
  type Role,
} from './auth.ts';
import { errorPage, registerPages } from './pages.ts';

export type ConsoleOptions = {
  tokens: readonly string[];
  readTokens: readonly string[];
  sessionTtlMs: number;
  secureCookie: boolean;
  /** Failed sign-ins per client address and window before it must wait. */
  loginLimiter?: LoginLimiter;
};

export const SESSION_COOKIE = 'outbox_relay_session';

/**
 * No script at all, styles only from our own stylesheet, no framing, forms only back to us. A receiver's response
 * that slipped past escaping still could not run.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "style-src 'self'",
  "img-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

const CSS = readFileSync(new URL('./static/console.css', import.meta.url));

declare module 'fastify' {
  interface FastifyRequest {
    role: Role | null;
  }
}

const isApi = (req: FastifyRequest) => req.url.startsWith('/api/');
const isPublic = (req: FastifyRequest) => req.url === '/static/console.css' || /^\/login(\?|$)/.test(req.url);

/** Builds the console app (not listening yet). */
export async function buildConsole(ops: Operations, options: ConsoleOptions, log: Logger): Promise<FastifyInstance> {
  const checkToken = createTokenCheck(options.tokens, options.readTokens);
  const sessions = createSessions({ ttlMs: options.sessionTtlMs });
  const limiter = options.loginLimiter ?? createLoginLimiter();
  const loggerInstance: FastifyBaseLogger = log; // the base type keeps route types at FastifyInstance's defaults
  const app = Fastify({
    loggerInstance,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1_048_576,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('role', null);
  // HTML forms: parsed with the platform's URLSearchParams; a repeated field keeps its last value.
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: 65_536 },
    (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
  );

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'outbox-relay management API',
        version: '1',
        description:
          'Endpoints, deliveries and replay of an outbox-relay installation. Every request needs ' +
          '`Authorization: Bearer <token>` (CONSOLE_TOKENS: full access; CONSOLE_READ_TOKENS: read-only, 403 on ' +
          'every POST). Errors are `{"error": {"code", "message"}}`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
    hideUntagged: true,
  });

  const sessionOf = (req: FastifyRequest) => sessions.get(cookie(req.headers.cookie, SESSION_COOKIE));

  app.addHook('onRequest', async (req, reply) => {
    void reply.headers({
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      'cache-control': 'no-store',
    });
    if (isPublic(req)) return;
    const bearer = bearerOf(req.headers.authorization);
    let viaCookie = false;
    if (bearer !== undefined) {
      const waitMs = limiter.retryAfterMs(req.ip);
      if (waitMs > 0) return tooManyFailures(req, reply, waitMs);
      req.role = checkToken(bearer);
      if (req.role === null) {
        limiter.failed(req.ip);
        log.warn({ ip: req.ip }, 'console: bearer token refused');
        return deny(
          req,
          reply,
          401,
          'unauthorized',
          'the bearer token is not one of CONSOLE_TOKENS or CONSOLE_READ_TOKENS',
        );
      }
    } else {
      req.role = sessionOf(req)?.role ?? null;
      viaCookie = req.role !== null;
    }
    if (req.role === null) {
      if (isApi(req)) {
        void reply.header('www-authenticate', 'Bearer');
        return deny(
          req,
          reply,
          401,
          'unauthorized',
          'send Authorization: Bearer <token> (CONSOLE_TOKENS or CONSOLE_READ_TOKENS)',
        );
      }
      return reply.redirect(`/login${req.method === 'GET' ? `?next=${encodeURIComponent(req.url)}` : ''}`, 303);
    }
    if (req.method === 'GET' || req.method === 'HEAD') return;
    if (viaCookie) {
      const verdict = sameOrigin({
        secFetchSite: header(req, 'sec-fetch-site'),
        origin: header(req, 'origin'),
        host: header(req, 'host'),
      });
      if (!verdict.ok) return deny(req, reply, 403, 'forbidden', verdict.reason);
    }
    if (req.role === 'read' && req.url !== '/logout') {
      return deny(req, reply, 403, 'forbidden', 'this token is read-only: actions need one of CONSOLE_TOKENS');
    }
  });

  app.setErrorHandler((err, req, reply) => {
    if (hasZodFastifySchemaValidationErrors(err)) {
      const where = err.validationContext ?? 'request';
      const message = err.validation
        .map((issue) => `${where}${issue.instancePath.replaceAll('/', '.')}: ${issue.message}`)
        .join('; ');
      return deny(req, reply, 400, 'invalid_request', message);
    }
    if (err instanceof ApiError) return deny(req, reply, err.statusCode, err.code, err.message);
    if (isRelayError(err, 'INVALID_REQUEST')) return deny(req, reply, 400, 'invalid_request', err.message);
    const status = (err as { statusCode?: number }).statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      return deny(req, reply, status, 'invalid_request', (err as Error).message);
    }
    log.error({ err, url: req.url }, 'console request failed');
    return deny(req, reply, 500, 'internal', 'internal error; the console log has the details');
  });

  app.setNotFoundHandler((req, reply) =>
    deny(req, reply, 404, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`),
  );

  app.get('/api/v1/openapi.json', { schema: { hide: true } }, () => app.swagger());
  app.get('/static/console.css', (_req, reply) =>
    reply.header('cache-control', 'public, max-age=3600').type('text/css; charset=utf-8').send(CSS),
  );
  registerApi(app, ops);
  registerPages(app, ops, {
    sessions,
    limiter,
    checkToken,
    secureCookie: options.secureCookie,
    ttlMs: options.sessionTtlMs,
    log,
  });
  return app;
}

/** The error shape of every route: JSON `{"error": {"code", "message"}}` for the API, a page for a browser. */
function deny(req: FastifyRequest, reply: FastifyReply, status: number, code: string, message: string) {
  if (isApi(req) || !(req.headers.accept ?? '').includes('text/html')) {
    return reply
      .code(status)
      .type('application/json; charset=utf-8')
      .send(JSON.stringify({ error: { code, message } }));
  }
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .send(errorPage(status, message, req.role).value);
}

function tooManyFailures(req: FastifyRequest, reply: FastifyReply, waitMs: number) {
  void reply.header('retry-after', String(Math.ceil(waitMs / 1000)));
  return deny(
    req,
    reply,
    429,
    'too_many_requests',
    `too many failed sign-ins from ${req.ip}; retry in ${Math.ceil(waitMs / 1000)} s`,
  );
}

const header = (req: FastifyRequest, name: string): string | undefined => {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/** One cookie's value from a Cookie header. */
export function cookie(headerValue: string | undefined, name: string): string | undefined {
  for (const part of (headerValue ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export { tooManyFailures };
