# Builds the single scoutfs executable and ships it in a small Debian image.
#   docker build -t scoutfs .
#   docker run --rm -v /dev:/dev --privileged scoutfs print -S /dev/sdX
FROM node:20-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN node_modules/.bin/bun scripts/build.ts /out/scoutfs

FROM debian:bookworm-slim
COPY --from=build /out/scoutfs /usr/local/bin/scoutfs
ENTRYPOINT ["/usr/local/bin/scoutfs"]
CMD ["--help"]
