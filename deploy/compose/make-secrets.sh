#!/usr/bin/env bash
# Makes the secrets compose.yaml mounts, in deploy/compose/secrets/ (never committed): a random
# PostgreSQL password and the URL with it, the Redis URL, an admin token and auth's key encryption
# key. Run once before `docker compose up`; an existing file is kept.
set -euo pipefail
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/secrets
mkdir -p "$dir"
umask 077
make() { [ -s "$dir/$1" ] || printf '%s\n' "$2" > "$dir/$1"; }
make postgres-password "$(openssl rand -hex 24)"
make postgresql-url "postgresql://gameverse:$(cat "$dir/postgres-password")@postgres:5432/gameverse"
make redis-url "redis://redis:6379"
make admin-token "$(openssl rand -hex 32)"
make auth-kek "$(openssl rand -base64 32)"
# The containers run as other users than the one running this script.
chmod 0644 "$dir"/*
echo "secrets in $dir; the operator's token: $(cat "$dir/admin-token")"
