#!/usr/bin/env bash
# PostgreSQL backup benchmark: create-backup in logical mode against `pg_dump -Fc` + `sha256sum`,
# and in physical mode against a full pgBackRest backup (gz level 6, process-max 2, start-fast),
# side by side in one run on the same >= 1 GiB pgbench database.
#
#   cargo build --release --all-features      (first: the script runs target/release/charm-backup)
#   bash bench/postgresql.sh [BENCH_DIR]      (default /var/tmp/charm-backup-pgbench; needs ~4 GiB)
#
# It runs as root on Debian 12 with PostgreSQL 15 (/usr/lib/postgresql/15/bin) and starts a
# cluster of its own in BENCH_DIR/data (unix socket in BENCH_DIR/socket, TCP on a free port of
# 127.0.0.1, local trust, host scram-sha-256; the password of role postgres in the 0600 file
# BENCH_DIR/postgres.password). The first run loads it with `pgbench -i -s 70` (a few minutes;
# PGBENCH_SCALE=N to change it); later runs reuse it, starting it if it is stopped. It installs
# pgbackrest and time with apt-get if they are missing.
#
# Prints time, output size and peak memory of each (the largest resident set in the process tree
# of the command, as /usr/bin/time reports it: the agent, the action, pg_dump or pg_basebackup;
# pgBackRest's worker processes; never the server's backends), and the ratios the postgresql issue targets: logical <= 1.1x the time of pg_dump -Fc +
# sha256sum at <= 1.0x its size; physical <= 1.0x the time and the size of pgBackRest.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
bench=${1:-/var/tmp/charm-backup-pgbench}
scale=${PGBENCH_SCALE:-70}

. bench/lib.sh
agent=$top/target/release/charm-backup
[ -x "$agent" ] || { echo "no $agent: build it first with cargo build --release --all-features"; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (the cluster and pgbackrest run as the postgres OS user)"; exit 1; }
pgbin=/usr/lib/postgresql/15/bin
[ -x "$pgbin/initdb" ] || bench_apt postgresql-15
bench_apt time pgbackrest
# Both sides run the PostgreSQL 15 client tools (pg_dump, pg_basebackup) from the same place.
export PATH=$pgbin:$PATH

pgdata=$bench/data sock=$bench/socket logs=$bench/log pwfile=$bench/postgres.password
repo=$bench/pgbackrest store=$bench/store out=$bench/out
as_pg() { runuser -u postgres -- "$@"; }
psql_pg() { as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres "$@"; }

# --- Setup: the cluster, its password, the pgbench data --------------------------------------
mkdir -p "$bench"
if [ ! -f "$pgdata/PG_VERSION" ]; then
  echo "creating a PostgreSQL 15 cluster in $pgdata"
  rm -rf "$pgdata"
  install -d -o postgres -g postgres -m 0700 "$pgdata"
  as_pg "$pgbin/initdb" -D "$pgdata" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 > "$bench/initdb.log"
  cat >> "$pgdata/postgresql.conf" <<EOF

# charm-backup benchmark cluster (bench/postgresql.sh); the port is given when it starts.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
EOF
fi
install -d -o postgres -g postgres -m 0755 "$sock" "$logs"
# pgBackRest keeps the WAL a backup needs in its archive, fed by archive_command; ours carries it
# in the archive (pg_basebackup -X fetch). Both sizes count that WAL.
if ! grep -q '^archive_mode = on' "$pgdata/postgresql.conf"; then
  as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop > /dev/null 2>&1 || true
  cat >> "$pgdata/postgresql.conf" <<EOF
archive_mode = on
archive_command = 'pgbackrest --config=$bench/pgbackrest.conf --stanza=bench archive-push %p'
EOF
fi
if as_pg "$pgbin/pg_ctl" -D "$pgdata" status > /dev/null 2>&1; then
  port=$(sed -n 4p "$pgdata/postmaster.pid")
else
  port=$(bench_port)
  echo "starting the cluster on 127.0.0.1:$port"
  as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$logs/postgresql.log" -o "-p $port" -w start > /dev/null
fi
if [ ! -s "$pwfile" ]; then
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$pwfile")
fi
chown root:root "$pwfile"; chmod 0600 "$pwfile"
psql_pg -d postgres <<< "ALTER ROLE postgres PASSWORD '$(cat "$pwfile")'"

db_scale() {
  psql_pg -d pgbench -At -c 'SELECT count(*) FROM pgbench_branches' 2>/dev/null || echo 0
}
if [ "$(db_scale)" != "$scale" ]; then
  echo "loading pgbench data at scale $scale (a few minutes)"
  psql_pg -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = 'pgbench'" | grep -q 1 \
    || as_pg "$pgbin/createdb" -h "$sock" -p "$port" -U postgres pgbench
  as_pg "$pgbin/pgbench" -i -q -s "$scale" -h "$sock" -p "$port" -U postgres pgbench > "$bench/pgbench-init.log" 2>&1 \
    || { cat "$bench/pgbench-init.log"; exit 1; }
  psql_pg -d postgres -c CHECKPOINT
fi
db_bytes=$(psql_pg -d postgres -At -c "SELECT pg_database_size('pgbench')")
[ "$db_bytes" -ge $((1 << 30)) ] || { echo "database pgbench is $db_bytes bytes (< 1 GiB): raise PGBENCH_SCALE"; exit 1; }
cluster_bytes=$(du -sb --exclude=pg_wal "$pgdata" | cut -f1)
# Warm the page cache so every contender reads from memory.
tar cf - -C "$bench" data | cat > /dev/null

# pgBackRest, as the postgres OS user, with everything in its own config file (and a fresh repo
# each run). It waits until the WAL of its backup is archived, as a real setup does.
cat > "$bench/pgbackrest.conf" <<EOF
[global]
repo1-path=$repo
log-path=$logs
lock-path=$sock
log-level-console=warn
log-level-file=detail
compress-type=gz
compress-level=6
process-max=2
start-fast=y
repo1-retention-full=1

[bench]
pg1-path=$pgdata
pg1-port=$port
pg1-socket-path=$sock
pg1-user=postgres
EOF
chmod 0644 "$bench/pgbackrest.conf"
pgbr() { as_pg pgbackrest "--config=$bench/pgbackrest.conf" --stanza=bench "$@"; }
rm -rf "$repo"; install -d -o postgres -g postgres -m 0750 "$repo"
pgbr stanza-create > /dev/null

# Our agent: its own unit state, pointed at the cluster (no file paths: the database only).
rm -rf "$bench/agent" "$store" "$out"; mkdir -p "$out"
"$agent" config --agent-dir "$bench/agent" paths= \
  "postgresql-uri=postgresql://postgres@127.0.0.1:$port/postgres" "postgresql-password-file=$pwfile" \
  postgresql-databases=pgbench "local-store=$store" > /dev/null \
  || { echo "charm-backup config failed: does this build have the postgresql options?"; exit 1; }
archive_of() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["charm-backup/0"]["results"]["backup"]["path"])' "$1"
}

echo "database pgbench: $((db_bytes >> 20)) MiB (scale $scale), cluster $((cluster_bytes >> 20)) MiB without pg_wal;" \
  "PostgreSQL 15 on 127.0.0.1:$port; $(pgbackrest version); $(nproc) cores"

# --- Logical: one database, as pg_dump -Fc would dump it -------------------------------------
sync
bench_time ours_logical "$agent" run --agent-dir "$bench/agent" --config postgresql-mode=logical create-backup --format json
S_ours_logical=$(stat -c %s "$(archive_of "$bench/stdout.ours_logical")")
sync
# shellcheck disable=SC2016 # expanded by sh, from its arguments
bench_time pg_dump sh -c 'PGPASSWORD=$(cat "$1") pg_dump -Fc -h 127.0.0.1 -p "$2" -U postgres -d pgbench > "$3" && sha256sum "$3"' \
  sh "$pwfile" "$port" "$out/pgbench.dump"
S_pg_dump=$(stat -c %s "$out/pgbench.dump")

# --- Physical: the whole cluster, with the WAL to make it consistent ------------------------
# Both tools keep whole 16 MiB WAL segments, the first holding whatever was logged before the
# backup began (a CREATE DATABASE adds megabytes). Each starts on a fresh segment, so neither
# carries the other's or an earlier run's WAL.
fresh_wal() { psql_pg -d postgres -c CHECKPOINT -c 'SELECT pg_switch_wal()' > /dev/null; }
fresh_wal
sync
bench_time ours_physical "$agent" run --agent-dir "$bench/agent" --config postgresql-mode=physical create-backup --format json
S_ours_physical=$(stat -c %s "$(archive_of "$bench/stdout.ours_physical")")
fresh_wal
sync
# Wait for the switched segment to be archived, so it is not counted as pgBackRest's.
for _ in $(seq 50); do
  [ "$(psql_pg -d postgres -At -c "SELECT last_archived_wal = pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver")" = t ] && break
  sleep 0.2
done
find "$repo/archive" -type f -printf '%P\n' | sort > "$bench/wal.before"
bench_time pgbackrest runuser -u postgres -- pgbackrest "--config=$bench/pgbackrest.conf" --stanza=bench backup --type=full
label=$(pgbr info --output=json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["backup"][-1]["label"])')
# The backup's files plus the WAL archived while it ran (counted by name: pgBackRest expires
# older backups' WAL at the end of a backup, so the archive's total may even shrink).
files_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
wal_new=$(find "$repo/archive" -type f -printf '%P\n' | sort | comm -13 "$bench/wal.before" - \
  | (cd "$repo/archive" && xargs -r stat -c %s) | awk '{s += $1} END {print s + 0}')
S_pgbackrest=$(( $(files_bytes "$repo/backup/bench/$label") + wal_new ))

# --- The same with zstd (compression=zstd), against the same baselines -----------------------
sync
bench_time ours_logical_zstd "$agent" run --agent-dir "$bench/agent" --config postgresql-mode=logical --config compression=zstd create-backup --format json
S_ours_logical_zstd=$(stat -c %s "$(archive_of "$bench/stdout.ours_logical_zstd")")
fresh_wal
sync
bench_time ours_physical_zstd "$agent" run --agent-dir "$bench/agent" --config postgresql-mode=physical --config compression=zstd create-backup --format json
S_ours_physical_zstd=$(stat -c %s "$(archive_of "$bench/stdout.ours_physical_zstd")")

# shellcheck disable=SC2154 # T_*, M_*: set by bench_time
python3 - "$T_ours_logical" "$T_pg_dump" "$S_ours_logical" "$S_pg_dump" "$M_ours_logical" "$M_pg_dump" \
  "$T_ours_physical" "$T_pgbackrest" "$S_ours_physical" "$S_pgbackrest" "$M_ours_physical" "$M_pgbackrest" \
  "$T_ours_logical_zstd" "$S_ours_logical_zstd" "$M_ours_logical_zstd" \
  "$T_ours_physical_zstd" "$S_ours_physical_zstd" "$M_ours_physical_zstd" <<'PY'
import sys
(tol, tpd, sol, spd, mol, mpd, top, tpb, sop, spb, mop, mpb,
 tolz, solz, molz, topz, sopz, mopz) = map(float, sys.argv[1:])
mib = 1 << 20
print()
print(f"{'logical: database pgbench':44} {'seconds':>8} {'size MiB':>9} {'peak MiB':>9}")
print(f"{'charm-backup create-backup (logical)':44} {tol:8.2f} {sol/mib:9.1f} {mol/1024:9.1f}")
print(f"{'  the same, compression=zstd':44} {tolz:8.2f} {solz/mib:9.1f} {molz/1024:9.1f}")
print(f"{'pg_dump -Fc > file + sha256sum':44} {tpd:8.2f} {spd/mib:9.1f} {mpd/1024:9.1f}")
print(f"{'physical: the whole cluster':44} {'seconds':>8} {'size MiB':>9} {'peak MiB':>9}")
print(f"{'charm-backup create-backup (physical)':44} {top:8.2f} {sop/mib:9.1f} {mop/1024:9.1f}")
print(f"{'  the same, compression=zstd':44} {topz:8.2f} {sopz/mib:9.1f} {mopz/1024:9.1f}")
print(f"{'pgbackrest backup --type=full (gz 6, 2 procs)':44} {tpb:8.2f} {spb/mib:9.1f} {mpb/1024:9.1f}")
print()
def row(name, value, target, ok):
    print(f"{name:52} {value:>9}   target {target:8} {'met' if ok else 'MISSED'}")
row("logical time relative to pg_dump -Fc + sha256sum", f"{tol/tpd:.2f}x", "<= 1.1x", tol/tpd <= 1.1)
row("logical size relative to pg_dump -Fc", f"{sol/spd:.3f}x", "<= 1.0x", sol/spd <= 1.0)
row("physical time relative to pgbackrest", f"{top/tpb:.2f}x", "<= 1.0x", top/tpb <= 1.0)
row("physical size relative to pgbackrest", f"{sop/spb:.3f}x", "<= 1.0x", sop/spb <= 1.0)
print("with compression=zstd:")
row("logical time relative to pg_dump -Fc + sha256sum", f"{tolz/tpd:.2f}x", "<= 1.1x", tolz/tpd <= 1.1)
row("logical size relative to pg_dump -Fc", f"{solz/spd:.3f}x", "<= 1.0x", solz/spd <= 1.0)
row("physical time relative to pgbackrest", f"{topz/tpb:.2f}x", "<= 1.0x", topz/tpb <= 1.0)
row("physical size relative to pgbackrest", f"{sopz/spb:.3f}x", "<= 1.0x", sopz/spb <= 1.0)
PY
