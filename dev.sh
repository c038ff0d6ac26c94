#!/usr/bin/env bash
# Set up and start everything hdxrq needs on one Debian 12 machine, then run the service or the tests.
#
#   ./dev.sh run     install what is missing, start Redis and PostGIS, run API + workers + scheduler
#   ./dev.sh test    install what is missing, start Redis and PostGIS, run the whole test suite
#   ./dev.sh up      only install and start the services
#   ./dev.sh down    stop the Redis and PostgreSQL this script started
#
# Idempotent: installed packages, an up-to-date virtualenv and running daemons are left alone.
# Redis keeps its data and log in var/ (git-ignored); PostgreSQL uses Debian's cluster 15/main
# (/var/lib/postgresql/15/main, log in /var/log/postgresql/). Both listen on 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VAR="$ROOT/var"
VENV="$ROOT/.venv"

# Development-only defaults: override them in the environment for anything real.
export HDX_REDIS_ADDR="${HDX_REDIS_ADDR:-127.0.0.1}"
export HDX_REDIS_PORT="${HDX_REDIS_PORT:-6379}"
export HDX_GISDB_ADDR="${HDX_GISDB_ADDR:-127.0.0.1}"
export HDX_GISDB_PORT="${HDX_GISDB_PORT:-5432}"
export HDX_GISDB_DB="${HDX_GISDB_DB:-gis}"
export HDX_GISDB_USER="${HDX_GISDB_USER:-gis}"
export HDX_GISDB_PASS="${HDX_GISDB_PASS:-gis}"
export REDIS_STREAM_HOST="${REDIS_STREAM_HOST:-$HDX_REDIS_ADDR}"
export REDIS_STREAM_PORT="${REDIS_STREAM_PORT:-$HDX_REDIS_PORT}"
# Redis's AOF fsync policy when this script starts Redis: everysec (may lose the last second of writes if the
# machine crashes) or always (fsync before every reply; see docs/OPERATIONS.md for what it costs).
HDXRQ_REDIS_APPENDFSYNC="${HDXRQ_REDIS_APPENDFSYNC:-everysec}"

DEBIAN_PACKAGES=(redis-server redis-sentinel postgresql-15 postgresql-15-postgis-3 gdal-bin python3-venv chromium
    libpq-dev gcc python3-dev libmagic1)  # the last four: CKAN's virtualenv (psycopg2 is built; python-magic)
PG_CLUSTER=(15 main)
TEST_TEMPLATE_DB=hdxrq_template

log() { printf '\033[1m[dev]\033[0m %s\n' "$*"; }

install_debian_packages() {
    local missing=()
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        apt-get update -q
        # Debian's postinst would start a cluster through init scripts; there is no init here, which is fine.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

python_for_venv() {
    # Prefer the interpreter on PATH (3.11 on these machines); Debian's python3 is the fallback.
    command -v python3.11 || command -v python3
}

install_virtualenv() {
    # requirements-dev.txt: the runtime's requirements.txt plus what the tests and checks need.
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)"
    if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return
    fi
    log "installing the virtualenv from requirements-dev.txt (with requirements.txt)"
    [[ -x "$VENV/bin/python" ]] || "$(python_for_venv)" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
    echo "$want" >"$stamp"
}

CKAN_VENV="$ROOT/.venv-ckan"
CKANEXT="$ROOT/ckanext-hdxrq"

install_ckan_virtualenv() {
    # CKAN 2.12 (its own pinned requirements) with ckanext-hdxrq, for the tests that drive a real CKAN.
    local stamp="$CKAN_VENV/.requirements.sha256"
    local want
    want="$(cat "$CKANEXT/test-requirements.txt" "$CKANEXT/ckan-2.12.0-requirements.txt" "$CKANEXT/pyproject.toml" \
        | sha256sum | cut -d' ' -f1)"
    if [[ -x "$CKAN_VENV/bin/ckan" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return
    fi
    log "installing CKAN and ckanext-hdxrq into .venv-ckan"
    [[ -x "$CKAN_VENV/bin/python" ]] || "$(python_for_venv)" -m venv "$CKAN_VENV"
    "$CKAN_VENV/bin/pip" install -q --disable-pip-version-check -r "$CKANEXT/test-requirements.txt"
    "$CKAN_VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$CKANEXT"
    echo "$want" >"$stamp"
}

install_npm_packages() {
    # Front-end assets (the map preview) come from npm and are served by the API, never from a CDN.
    [[ -f "$ROOT/package.json" ]] || return 0
    if [[ ! -f "$ROOT/node_modules/.package-lock.json" || "$ROOT/package.json" -nt "$ROOT/node_modules/.package-lock.json" ]]; then
        command -v npm >/dev/null || { DEBIAN_PACKAGES=(nodejs npm); install_debian_packages; }
        log "installing npm packages"
        (cd "$ROOT" && npm install --no-audit --no-fund --silent)
    fi
}

start_redis() {
    case "$HDXRQ_REDIS_APPENDFSYNC" in
        everysec | always | no) ;;
        *) log "HDXRQ_REDIS_APPENDFSYNC must be everysec, always or no" && exit 2 ;;
    esac
    if redis-cli -h "$HDX_REDIS_ADDR" -p "$HDX_REDIS_PORT" ping >/dev/null 2>&1; then
        return
    fi
    log "starting Redis on $HDX_REDIS_ADDR:$HDX_REDIS_PORT (data in var/redis, appendfsync $HDXRQ_REDIS_APPENDFSYNC)"
    mkdir -p "$VAR/redis" "$VAR/log"
    # 128 databases: db 1 (queues) and db 7 (event stream) for the service, the rest for parallel tests.
    redis-server --bind "$HDX_REDIS_ADDR" --port "$HDX_REDIS_PORT" --protected-mode yes \
        --dir "$VAR/redis" --appendonly yes --appendfsync "$HDXRQ_REDIS_APPENDFSYNC" --databases 128 \
        --daemonize yes --pidfile "$VAR/redis/redis.pid" --logfile "$VAR/log/redis.log"
    for _ in $(seq 50); do
        redis-cli -h "$HDX_REDIS_ADDR" -p "$HDX_REDIS_PORT" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    log "Redis did not start, see $VAR/log/redis.log" && exit 1
}

psql_super() { su postgres -c "psql -v ON_ERROR_STOP=1 -qAt -p $HDX_GISDB_PORT $*"; }

start_postgres() {
    if ! pg_lsclusters -h | awk -v v="${PG_CLUSTER[0]}" -v n="${PG_CLUSTER[1]}" '$1==v && $2==n && $4=="online" {found=1} END {exit !found}'; then
        log "starting PostgreSQL ${PG_CLUSTER[*]} on 127.0.0.1:$HDX_GISDB_PORT"
        printf "listen_addresses = '127.0.0.1'\nport = %s\n" "$HDX_GISDB_PORT" \
            >"/etc/postgresql/${PG_CLUSTER[0]}/${PG_CLUSTER[1]}/conf.d/hdxrq.conf"
        pg_ctlcluster "${PG_CLUSTER[@]}" start
    fi
    for _ in $(seq 100); do
        su postgres -c "pg_isready -q -p $HDX_GISDB_PORT" && break
        sleep 0.1
    done
}

create_gis_database() {
    local user="$HDX_GISDB_USER" db="$HDX_GISDB_DB"
    if [[ "$(psql_super "-c \"SELECT 1 FROM pg_roles WHERE rolname = '$user'\"")" != 1 ]]; then
        log "creating role $user"
        # The password is read from the environment inside psql, never put on a command line.
        su postgres -c "psql -v ON_ERROR_STOP=1 -q -p $HDX_GISDB_PORT" <<SQL
\\set pass \`printenv HDX_GISDB_PASS\`
CREATE ROLE "$user" LOGIN CREATEDB PASSWORD :'pass';
SQL
    fi
    if [[ "$(psql_super "-c \"SELECT 1 FROM pg_database WHERE datname = '$db'\"")" != 1 ]]; then
        log "creating database $db"
        su postgres -c "createdb -p $HDX_GISDB_PORT -O '$user' '$db'"
    fi
    psql_super "-d '$db' -c 'CREATE EXTENSION IF NOT EXISTS postgis'"
    if [[ "$(psql_super "-c \"SELECT 1 FROM pg_database WHERE datname = '$TEST_TEMPLATE_DB'\"")" != 1 ]]; then
        log "creating the test template database $TEST_TEMPLATE_DB"
        su postgres -c "createdb -p $HDX_GISDB_PORT -O '$user' $TEST_TEMPLATE_DB"
        psql_super "-d $TEST_TEMPLATE_DB -c 'CREATE EXTENSION IF NOT EXISTS postgis'"
        psql_super "-c \"ALTER DATABASE $TEST_TEMPLATE_DB IS_TEMPLATE true\""
    fi
}

up() {
    install_debian_packages
    install_virtualenv
    install_ckan_virtualenv
    install_npm_packages
    start_redis
    start_postgres
    create_gis_database
}

down() {
    [[ -f "$VAR/redis/redis.pid" ]] && redis-cli -h "$HDX_REDIS_ADDR" -p "$HDX_REDIS_PORT" shutdown >/dev/null 2>&1 || true
    pg_ctlcluster "${PG_CLUSTER[@]}" stop 2>/dev/null || true
}

case "${1:-}" in
    run)
        shift
        up
        exec "$VENV/bin/python" "$ROOT/hdxrq.py" run "$@"
        ;;
    test)
        shift
        up
        cd "$ROOT"
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    up) up ;;
    down) down ;;
    *)
        echo "usage: $0 run|test|up|down [args...]" >&2
        exit 2
        ;;
esac
