// REST API /api/v1 (DESIGN.md, "Console and management API"): thin routes over the operations module. Every
// request and response goes through the zod schemas in schemas.ts, which also make the OpenAPI document.
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { attemptJson, deliveryJson, endpointJson, healthJson, statusJson } from '../ops/format.ts';
import type { Operations } from '../ops/operations.ts';
import {
  AttemptJson,
  DeliveryId,
  DeliveryJson,
  DeliveryQuery,
  DisableBody,
  EndpointHealthJson,
  EndpointId,
  EndpointJson,
  EndpointQuery,
  ErrorResponse,
  ReplayBody,
  ReplayResultJson,
  RotateBody,
  StatusJson,
  toFilter,
} from './schemas.ts';

export class ApiError extends Error {
  readonly statusCode: number;
  readonly code: string;
  constructor(statusCode: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.statusCode = statusCode;
    this.code = code;
  }
}

const notFound = (what: string, id: string) => new ApiError(404, 'not_found', `no ${what} ${id}`);

const errors = { 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse, 429: ErrorResponse };
const writeErrors = { ...errors, 404: ErrorResponse };

/** Registers the /api/v1 routes (not the OpenAPI document: server.ts serves that). */
export function registerApi(parent: FastifyInstance, ops: Operations): void {
  const app = parent.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/api/v1/status',
    {
      schema: {
        summary: 'Slot health, delivery backlog and the endpoints that need attention first',
        tags: ['status'],
        response: { 200: StatusJson, ...errors },
      },
    },
    async () => statusJson(await ops.status()),
  );

  app.get(
    '/api/v1/endpoints',
    {
      schema: {
        summary: "Every endpoint (or one tenant's), secrets masked",
        tags: ['endpoints'],
        querystring: EndpointQuery,
        response: { 200: z.strictObject({ endpoints: z.array(EndpointJson), truncated: z.boolean() }), ...errors },
      },
    },
    async (req) => {
      const page = await ops.listEndpoints({
        tenant: req.query.tenant,
        limit: req.query.limit === undefined ? undefined : Number(req.query.limit),
      });
      return { endpoints: page.endpoints.map(endpointJson), truncated: page.truncated };
    },
  );

  app.get(
    '/api/v1/endpoints/:id',
    {
      schema: {
        summary: 'One endpoint with its last hour and backlog, secrets masked',
        tags: ['endpoints'],
        params: z.object({ id: EndpointId }),
        response: { 200: z.strictObject({ endpoint: EndpointHealthJson }), ...writeErrors },
      },
    },
    async (req) => {
      const e = await ops.endpoint(req.params.id.toLowerCase());
      if (e === null) throw notFound('endpoint', req.params.id);
      return { endpoint: healthJson(e) };
    },
  );

  app.post(
    '/api/v1/endpoints/:id/disable',
    {
      schema: {
        summary: 'Stop delivering to an endpoint; its pending deliveries wait (parked) until it is enabled',
        tags: ['endpoints'],
        params: z.object({ id: EndpointId }),
        body: DisableBody,
        response: { 200: z.strictObject({ endpoint: EndpointJson }), ...writeErrors },
      },
    },
    async (req) => {
      const row = await ops.disableEndpoint(req.params.id.toLowerCase(), req.body?.reason);
      if (row === null) throw notFound('endpoint', req.params.id);
      return { endpoint: endpointJson(row) };
    },
  );

  app.post(
    '/api/v1/endpoints/:id/enable',
    {
      schema: {
        summary: 'Deliver again: parked deliveries go out and the failing streak is cleared',
        tags: ['endpoints'],
        params: z.object({ id: EndpointId }),
        response: {
          200: z.strictObject({ endpoint: EndpointJson, pending: z.number().describe('Parked deliveries now due') }),
          ...writeErrors,
        },
      },
    },
    async (req) => {
      const row = await ops.enableEndpoint(req.params.id.toLowerCase());
      if (row === null) throw notFound('endpoint', req.params.id);
      return { endpoint: endpointJson(row), pending: row.parked };
    },
  );

  app.post(
    '/api/v1/endpoints/:id/rotate-secret',
    {
      schema: {
        summary: 'A new signing secret, returned once; the old one still signs for keepPreviousSeconds',
        tags: ['endpoints'],
        params: z.object({ id: EndpointId }),
        body: RotateBody,
        response: {
          200: z.strictObject({
            endpoint: EndpointJson,
            secret: z.string().describe('The new secret in full: shown this once, never again'),
            droppedLivePrevious: z.boolean().describe('An older rotation still in progress lost its old secret'),
          }),
          ...writeErrors,
        },
      },
    },
    async (req, reply) => {
      const keep = req.body?.keepPreviousSeconds;
      const rotated = await ops.rotateSecret(req.params.id.toLowerCase(), {
        keepPreviousMs: keep === undefined ? undefined : keep * 1000,
      });
      if (rotated === null) throw notFound('endpoint', req.params.id);
      void reply.header('cache-control', 'no-store');
      return {
        endpoint: endpointJson(rotated.endpoint),
        secret: rotated.secret,
        droppedLivePrevious: rotated.droppedLivePrevious,
      };
    },
  );

  app.get(
    '/api/v1/deliveries',
    {
      schema: {
        summary: 'Deliveries, newest first, filtered; follow nextCursor for the next page',
        tags: ['deliveries'],
        querystring: DeliveryQuery,
        response: {
          200: z.strictObject({
            deliveries: z.array(DeliveryJson),
            truncated: z.boolean(),
            nextCursor: z.string().nullable(),
          }),
          ...errors,
        },
      },
    },
    async (req) => {
      const { limit, cursor, ...filters } = req.query;
      const page = await ops.listDeliveries(toFilter(filters), {
        limit: limit === undefined ? undefined : Number(limit),
        cursor,
      });
      return { deliveries: page.deliveries.map(deliveryJson), truncated: page.truncated, nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/api/v1/deliveries/:id',
    {
      schema: {
        summary: 'One delivery with its failed attempts, oldest first',
        tags: ['deliveries'],
        params: z.object({ id: DeliveryId }),
        response: { 200: z.strictObject({ delivery: DeliveryJson, attempts: z.array(AttemptJson) }), ...writeErrors },
      },
    },
    async (req) => {
      const found = await ops.delivery(req.params.id);
      if (found === null) throw notFound('delivery', req.params.id);
      return { delivery: deliveryJson(found.delivery), attempts: found.attempts.map(attemptJson) };
    },
  );

  app.post(
    '/api/v1/replay',
    {
      schema: {
        summary: 'Move dead deliveries matching the filters (or ids) back to pending; dryRun only counts',
        tags: ['deliveries'],
        body: ReplayBody,
        response: { 200: ReplayResultJson, ...errors },
      },
    },
    async (req) => {
      const { all, dryRun, ...filters } = req.body;
      return ops.replay({ filter: toFilter(filters), all, dryRun: dryRun ?? false });
    },
  );
}
