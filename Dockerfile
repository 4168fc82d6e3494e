# syntax=docker/dockerfile:1
# The kmsync image: one static binary (operator, emulator, `kmsync kms`, `kmsync crd`) on
# distroless/static as a non-root user. Used by charts/kmsync (ghcr.io/kmsync/kmsync:<appVersion>).
#
# NOTE: this cannot be built on the project's development/CI machines (no container runtime);
# it is written for a release pipeline with Docker/BuildKit:
#   docker build -t ghcr.io/kmsync/kmsync:0.1.0 .

ARG RUST_VERSION=1.88

FROM rust:${RUST_VERSION}-bookworm AS build
ARG TARGET=x86_64-unknown-linux-musl
# musl-tools for the musl C toolchain (ring compiles a little C/assembly); no OpenSSL anywhere,
# TLS is rustls + ring.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" \
 && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" --bin kmsync \
 && cp "target/${TARGET}/release/kmsync" /kmsync \
 && /kmsync --version

# distroless/static: CA certificates and /etc/passwd with `nonroot` (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /kmsync /usr/local/bin/kmsync
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kmsync"]
CMD ["run"]
