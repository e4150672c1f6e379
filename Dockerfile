# syntax=docker/dockerfile:1
# outbox-relay image: Node 24 runs the TypeScript sources directly (type stripping), so there is no build
# step, only a production-dependency install.
#   docker build -t outbox-relay:0.1.0 .
#   docker run --rm -e DATABASE_URL=postgres://... -p 8080:8080 outbox-relay:0.1.0

# --- deps: production dependencies only -------------------------------------------------------------------
# The `node` and `embedded-postgres` devDependencies (a Node binary and Postgres binaries) stay out of the
# image. No production dependency has an install script, so scripts are skipped outright.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# --- runtime ----------------------------------------------------------------------------------------------
FROM node:24-slim
# tini is PID 1: it forwards SIGTERM to node (which drains within SHUTDOWN_GRACE) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin relay

ENV NODE_ENV=production
# V8 sizes its young generation from the memory it sees (up to 134 MB of new space on a large host). 8 MB
# semi-spaces cut the relay's peak RSS by about 100 MB in npm run bench with no measurable CPU cost;
# override NODE_OPTIONS to tune (README, Performance).
ENV NODE_OPTIONS=--max-semi-space-size=8
WORKDIR /app
# Files stay owned by root and read-only to the relay user; nothing is written at runtime (logs go to
# stdout), so the container runs with a read-only root filesystem.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY sql ./sql
COPY src ./src

# Numeric uid:gid so Kubernetes' runAsNonRoot can verify it (the Helm chart sets runAsUser 10001 too).
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "src/main.ts"]
CMD ["run"]
