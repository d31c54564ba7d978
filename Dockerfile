# The same layout as `make image` (which needs no Docker): a static musl binary at
# /usr/local/bin, user 65532, entrypoint the binary, command `serve`; here on distroless/static.
# Build: docker build -t kafka-listener-injector:0.1.0 \
#   --build-arg KLI_REVISION=$(git rev-parse HEAD) --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) .
# (without them `--version` says revision unknown: the build context has no .git).
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
ARG KLI_REVISION=unknown
ARG SOURCE_DATE_EPOCH
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY bench/fixtures ./bench/fixtures
COPY examples ./examples
RUN cargo build --release --locked --bin kafka-listener-injector \
 && strip target/release/kafka-listener-injector

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/kafka-listener-injector /usr/local/bin/kafka-listener-injector
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/kafka-listener-injector"]
CMD ["serve"]
