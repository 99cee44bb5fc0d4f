# syntax=docker/dockerfile:1
# sluice container image: built and run on the current Node LTS (24), slim Debian base.
#   docker build -t sluice .
#   docker run --read-only -v ./policy.yaml:/etc/sluice/policy.yaml:ro \
#     -v sluice-certs:/var/lib/sluice/certs -v sluice-audit:/var/log/sluice -p 3128:3128 sluice
# The process writes only to the two volumes (CA, audit), so it runs with a read-only root file system.
ARG NODE_IMAGE=node:24-bookworm-slim

# Compiles the TypeScript (`npm ci` runs the prepare script, tsc) with the dev dependencies.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY config ./config
COPY data ./data
COPY scripts/bundle.mjs ./scripts/
# npm ci compiles (prepare: tsc); the bundle makes dist/cli.js start faster (issue 20)
RUN npm ci --no-audit --no-fund && node scripts/bundle.mjs

# Production dependencies only; --ignore-scripts because prepare (tsc) needs the dev dependencies.
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    SLUICE_POLICY=/etc/sluice/policy.yaml \
    SLUICE_LISTEN=0.0.0.0:3128 \
    SLUICE_ADMIN=0.0.0.0:9090 \
    SLUICE_CA_DIR=/var/lib/sluice/certs \
    SLUICE_AUDIT=/var/log/sluice/audit.log
# A fixed, unprivileged UID/GID so Kubernetes (runAsUser) and the iptables owner match can name it.
RUN groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sluice \
 && mkdir -p /var/lib/sluice/certs /var/lib/sluice/public /var/log/sluice /etc/sluice \
 && chown 10001:10001 /var/lib/sluice/certs /var/lib/sluice/public /var/log/sluice \
 && chmod 0700 /var/lib/sluice/certs
WORKDIR /app
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# The schema is read at run time (src/config/schema.ts); the example policy is there to copy from.
COPY --from=build /src/config/network-egress.schema.json /src/config/policy.example.yaml ./config/
COPY --from=build /src/data/exfil-hosts.json ./data/
COPY package.json ./
USER 10001:10001
# certs holds the CA key (0600); public is where deploy/compose/publish-ca.mjs puts the certificate
# alone for tools to mount. Empty named volumes inherit these owners and modes.
VOLUME ["/var/lib/sluice/certs", "/var/lib/sluice/public", "/var/log/sluice"]
EXPOSE 3128 9090
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const a=(process.env.SLUICE_ADMIN||'127.0.0.1:9090').replace(/^0\\.0\\.0\\.0:|^\\[::\\]:/,'127.0.0.1:');fetch('http://'+a+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# serve drains open exchanges and flushes the audit on SIGTERM, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["serve"]
