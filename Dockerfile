# syntax=docker/dockerfile:1
# mirrorcap: build with the same `npm ci` as the README, run on a slim Node LTS as a
# non-root user. test/deploy/dockerfile.test.ts replays these steps on a fresh clone.
#
#   docker build -t mirrorcap .
#   docker run -d --name mirrorcap --init --network host --stop-timeout 20 \
#     -v mirrorcap-captures:/var/lib/mirrorcap/captures mirrorcap

# Both stages must run the same Node major: the native addon is built against its ABI.
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ libpcap-dev \
 && rm -rf /var/lib/apt/lists/*
# node-gyp builds against the headers this image ships instead of downloading them.
ENV npm_config_nodedir=/usr/local
WORKDIR /build
COPY . .
# The README's install: compiles the TypeScript (prepare), the native addon (install) and
# cap's libpcap binding.
RUN npm ci
# The addon's build script never fails the install (mirrorcap falls back to node:dgram), but
# an image built with a compiler at hand must not quietly ship without it.
RUN if [ -f native/binding.gyp ]; then test -f native/build/Release/mirrorcap_native.node || { cat native/build.log; exit 1; }; fi
# Production dependencies only; compiled bindings stay. The folder exists addon or not, so
# the runtime stage's COPY of *.node always has somewhere to look.
RUN npm prune --omit=dev \
 && mkdir -p native/build/Release

FROM ${NODE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /opt/mirrorcap
COPY --from=build /build/package.json ./
COPY --from=build /build/node_modules ./node_modules
COPY --from=build /build/dist/src ./dist/src
COPY --from=build /build/native/build/Release/*.node ./native/build/Release/
# mirrorcap runs here, so the default --out (./captures) is the volume: no flag to keep in step.
WORKDIR /var/lib/mirrorcap
RUN mkdir captures && chown node:node captures
VOLUME /var/lib/mirrorcap/captures
USER node
EXPOSE 4789/udp 9789/tcp
# SIGTERM flushes and closes every file within 10 s; give `docker stop` --stop-timeout 20.
STOPSIGNAL SIGTERM
# Slim images have no curl: node asks /healthz on the port MIRRORCAP_HTTP names (default 9789).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const a=process.env.MIRRORCAP_HTTP||'0.0.0.0:9789',i=a.lastIndexOf(':'),h=a.slice(0,i).replace('[','').replace(']','');require('http').get({host:['0.0.0.0','::',''].includes(h)?'127.0.0.1':h,port:+a.slice(i+1),path:'/healthz',timeout:3000},(r)=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
ENTRYPOINT ["node", "/opt/mirrorcap/dist/src/main.js"]
CMD ["run"]
