# syntax=docker/dockerfile:1
# The kmsync image: one static binary (operator, emulator, `kmsync kms`, `kmsync crd`) on
# distroless/static as a non-root user. Used by charts/kmsync (ghcr.io/kmsync/kmsync:<appVersion>).
#
# The project's test node has no container daemon: `scripts/image.sh kmsync` packs the same
# contents (the release binary on a non-root base, no shell) without one. With Docker/BuildKit:
#   docker build -t ghcr.io/kmsync/kmsync:0.1.0 .

# kube 5 needs Rust 1.89 (Cargo.toml's rust-version).
ARG RUST_VERSION=1.89

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
# Cargo.toml names the benchmark target too, so its file must exist for any build.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src bench/scale && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > bench/scale/main.rs \
 && cargo build --release --locked --target "${TARGET}" --bin kmsync \
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
