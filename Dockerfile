# burrow's image: the host binary, the reference application component and
# migrations/ on a slim Debian, running as an unprivileged user.
#
#   docker build -t burrow .                      # the runtime image (last stage)
#   docker build --target dev-bastion -t b .      # the development bastion (compose profile `dev`)
#
# No SSH key, known_hosts, .env or other secret is copied into any layer:
# only the paths named below are, and .dockerignore keeps ssh_keys/, .env*,
# .dev/, target/ and .git/ out of the build context altogether. Keys and
# known_hosts are mounted at run time (docker-compose.yml mounts ssh_keys/
# read-only at /app/ssh_keys).

# ---- builder: the host (release, native) and the guest (wasm32-wasip2) ----
FROM rust:1.95-slim-bookworm AS builder
RUN rustup target add wasm32-wasip2
WORKDIR /src

# Dependencies first, in a layer of their own that survives source changes.
# Cargo loads the whole workspace, so every member's manifest must be here;
# each member gets a placeholder source until the real ones are copied.
# Of testing/ and bench/ the build context holds only the members' manifests
# (each named in .dockerignore), so a new test or bench member needs a line
# there and none here.
COPY Cargo.toml Cargo.lock ./
COPY host/Cargo.toml host/
COPY sdk/Cargo.toml sdk/
COPY guest/Cargo.toml guest/
COPY testing/ testing/
COPY bench/ bench/
RUN for manifest in */Cargo.toml */*/Cargo.toml */*/*/Cargo.toml; do \
        [ -f "$manifest" ] || continue; \
        mkdir -p "${manifest%/Cargo.toml}/src" \
        && echo 'fn main() {}' > "${manifest%/Cargo.toml}/src/main.rs"; \
    done \
    && rm sdk/src/main.rs \
    && touch host/src/lib.rs sdk/src/lib.rs \
    && cargo build --release --locked -p burrow \
    && cargo build --release --locked --target wasm32-wasip2 -p burrow-guest

# The real sources. COPY keeps the files' own (older) modification times, so
# they are touched: otherwise cargo would take the placeholders' build as fresh.
COPY wit/ wit/
COPY host/src/ host/src/
COPY sdk/src/ sdk/src/
COPY guest/src/ guest/src/
RUN find host/src sdk/src guest/src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p burrow \
    && cargo build --release --locked --target wasm32-wasip2 -p burrow-guest

# ---- dev-bastion: the OpenSSH bastion of `docker compose --profile dev` ----
# Development only; the runtime image below does not depend on it. Its host
# key is made at run time (ssh_keys/make-dev-keys, the compose `dev-keys`
# service), never at build time, so no image carries one.
FROM debian:bookworm-slim AS dev-bastion
# Debian's stable release takes only security fixes, and a pinned version
# stops installing once a fix supersedes it, so the package is left unpinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-server \
    && rm -rf /var/lib/apt/lists/* \
    && rm -f /etc/ssh/ssh_host_* \
    && mkdir -p /run/sshd /etc/ssh/burrow \
    && useradd --create-home --shell /usr/sbin/nologin --password '*' tunnel
COPY docker/dev/sshd_config /etc/ssh/sshd_config
EXPOSE 22
CMD ["/usr/sbin/sshd", "-D", "-e"]

# ---- runtime ----
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 burrow \
    && useradd --system --uid 10001 --gid burrow --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin burrow \
    && mkdir -p /app/cache \
    && chown burrow:burrow /app/cache \
    && chmod 700 /app/cache
WORKDIR /app
COPY --from=builder /src/target/release/burrow /usr/local/bin/burrow
COPY --from=builder /src/target/wasm32-wasip2/release/burrow-guest.wasm /app/components/app.wasm
COPY migrations/ /app/migrations/
COPY docker/burrow.toml /app/burrow.toml
# Relative paths in settings (SSH_KEY, SSH_KNOWN_HOSTS and their defaults
# ssh_keys/…) resolve under /app, where ssh_keys/ is mounted.
ENV BURROW_CACHE_DIR=/app/cache \
    BURROW_LISTEN=0.0.0.0:8000
# Numeric, so that a runtime can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# `burrow healthcheck` asks the admin listener (BURROW_ADMIN_LISTEN, default
# 127.0.0.1:8001) for /_burrow/ready and exits 0 only on 200.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["burrow", "healthcheck"]
ENTRYPOINT ["burrow"]
CMD ["serve"]
