#!/usr/bin/env bash
# PostgreSQL point-in-time recovery benchmark: WAL archiving and restore-to-time of charm-backup
# against pgBackRest, side by side in one run on the same pgbench WAL.
#
#   cargo build --release --all-features      (the script runs it too; CARGO_TARGET_DIR is honoured)
#   bash bench/pitr.sh                        (needs ~4 GiB free under PITR_DIR, default /var/tmp)
#
# It runs as root on Debian 12 with PostgreSQL 15 (/usr/lib/postgresql/15/bin), and installs
# pgbackrest and time with apt-get when they are missing. Everything lives in a fresh temporary
# directory under PITR_DIR: a cluster of its own (initdb as the postgres OS user; unix socket
# there, TCP on a free port of 127.0.0.1; the server's defaults but for archive_mode=on and
# max_wal_size=2GB, fsync on), a local unit of the charm (the `charm-backup` agent, its hooks and
# actions), the charm's local store, and pgBackRest's repositories and config file. The server is
# stopped and the directory removed on exit (PITR_KEEP=1 keeps it).
#
# What it does, in order:
#  1. The charm's config-changed hook with postgresql-wal-archive=true installs its copy of
#     dispatch and the settings it replays, and points archive_command at `dispatch wal-push`
#     (archive_timeout=60).
#  2. Archive lag, on the new, idle cluster with the hook's archive_command: one row is
#     committed right after a segment switch (the worst case: the segment then closes only when
#     archive_timeout runs out) and the store is polled until the segment holding the commit is
#     in it.
#  3. The script prefixes archive_command with a copy of the segment into a capture directory
#     and `pgbackrest archive-push`, so both archives get every later segment; `pgbench -i -s
#     $PGBENCH_SCALE` (default 20); base backups of both: create-backup (physical) and
#     `pgbackrest backup --type=full`, one after the other, before the load.
#  4. pgbench (tpcb-like, $PGBENCH_CLIENTS clients, default 4) in 5 s runs with a CHECKPOINT
#     after each, as on a busy server with frequent checkpoints (full-page images: without them
#     tpcb-like logs under 1 MiB/s on 2 cores), until it has written $PITR_WAL_MIB MiB of WAL
#     (default 1100, so the restores replay >= 1 GiB), marks the target
#     time (nothing commits for a second either side of it), loads 3 more seconds and waits until
#     every segment is in both archives.
#  5. Archiving throughput: the captured segments of the load, pushed one at a time as the
#     archiver does (as the postgres user, from the data directory), each tool into an archive of
#     its own that is empty at the start: `dispatch wal-push` (gzip level 6 on one core, its default for
#     WAL; also with compression-threads=2) and `pgbackrest archive-push` (archive-async=n, compress-type=gz at
#     its default level 6, one process). Page cache warm for all. PITR_ROUNDS rounds (default
#     3), the tools taking turns, each round into new archives; the fastest round of each counts
#     (other work on the machine only ever slows one down), and every round's time is shown.
#  6. Restore to the target time, replaying the same WAL, each from its own archive: the charm's
#     `restore restore-to-time=T skip-backup=true` action through the local agent, timed whole
#     (it archives the running server's last WAL, stops it, restores the base backup, starts it
#     with wal-fetch as restore_command, waits for the promotion, checkpoints); then the server
#     is stopped and its data directory emptied (untimed), and `pgbackrest restore --type=time
#     --target-action=promote` + `pg_ctl start` + polling until pg_is_in_recovery() is false is
#     timed. The replay itself (from "starting point-in-time recovery" to "ready to accept
#     connections" in the server log) is shown for both; every restore must bring back the rows
#     pgbench_history held at the target. PITR_ROUNDS rounds of the pair, the fastest counting.
#
# Targets: wal-push throughput >= 1.0x pgbackrest archive-push; archive lag <= 65 s;
# restore-to-time <= 1.0x the time of pgBackRest's restore.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
scale=${PGBENCH_SCALE:-20}
wal_mib=${PITR_WAL_MIB:-1100}
clients=${PGBENCH_CLIENTS:-4}
rounds=${PITR_ROUNDS:-3}

. bench/lib.sh
[ "$(id -u)" -eq 0 ] || { echo "run as root (the cluster and pgbackrest run as the postgres OS user)"; exit 1; }
pgbin=/usr/lib/postgresql/15/bin
[ -x "$pgbin/initdb" ] || bench_apt postgresql-15
bench_apt time pgbackrest
export PATH=$pgbin:$PATH
cargo build --release --all-features --quiet
bin=${CARGO_TARGET_DIR:-$top/target}/release
agent=$bin/charm-backup
if [ ! -x "$agent" ] || [ ! -x "$bin/dispatch" ]; then echo "no $agent or dispatch beside it"; exit 1; fi

mkdir -p "${PITR_DIR:-/var/tmp}"
bench=$(mktemp -d "${PITR_DIR:-/var/tmp}/charm-backup-pitr.XXXXXX")
chmod 0755 "$bench"
pgdata=$bench/data sock=$bench/socket logs=$bench/log pwfile=$bench/postgres.password
capture=$bench/wal-capture repo=$bench/pgbackrest store=$bench/store adir=$bench/agent
conf=$bench/pgbackrest.conf pglog=$bench/log/postgresql.log
as_pg() { runuser -u postgres -- "$@"; }
psql_pg() { as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres "$@"; }
sql() { psql_pg -d "${2:-postgres}" -At -c "$1"; }
pgbr() { as_pg pgbackrest "--config=$conf" --stanza=bench "$@"; }
cleanup() {
  local rc=$?
  if [ -f "$pgdata/postmaster.pid" ]; then
    as_pg "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w stop > /dev/null 2>&1 || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "$pglog" ]; then
    echo "failed (exit $rc); the end of the server log:"; tail -n 20 "$pglog"
  fi
  if [ -n "${PITR_KEEP:-}" ]; then echo "kept $bench"; else rm -rf "$bench"; fi
}
trap cleanup EXIT
# Seconds since the epoch, with microseconds.
now() { date +%s.%6N; }
# wait_archived SEGMENT [SECONDS]: until pg_stat_archiver has archived SEGMENT (or a later one).
wait_archived() {
  local seg=$1 limit=${2:-3600} start last
  start=$(date +%s)
  while :; do
    last=$(sql "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    [ -n "$last" ] && [[ ! "${last:0:24}" < "$seg" ]] && return 0
    if [ $(( $(date +%s) - start )) -gt "$limit" ]; then
      echo "$seg was not archived within ${limit}s:"; sql "SELECT * FROM pg_stat_archiver"; exit 1
    fi
    sleep 0.2
  done
}
switch_wal() { sql "SELECT pg_walfile_name(pg_switch_wal())"; }

# --- The cluster ------------------------------------------------------------------------------
install -d -o postgres -g postgres -m 0700 "$pgdata"
install -d -o postgres -g postgres -m 0755 "$sock" "$logs" "$capture"
port=$(bench_port)
as_pg "$pgbin/initdb" -D "$pgdata" -U postgres -E UTF8 --locale=C \
  --auth-local=trust --auth-host=scram-sha-256 > "$bench/initdb.log"
cat >> "$pgdata/postgresql.conf" <<EOF

# charm-backup PITR benchmark cluster (bench/pitr.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
archive_mode = on
max_wal_size = 2GB
EOF
as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pglog" -w start > /dev/null
(umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$pwfile")
psql_pg -d postgres <<< "ALTER ROLE postgres PASSWORD '$(cat "$pwfile")'"

# pgBackRest, as the postgres OS user, everything in its own config file.
cat > "$conf" <<EOF
[global]
repo1-path=$repo
log-path=$logs
lock-path=$bench/pgbackrest-lock
spool-path=$bench/pgbackrest-spool
log-level-console=warn
log-level-file=info
compress-type=gz
compress-level=6
archive-async=n
process-max=2
start-fast=y

[bench]
pg1-path=$pgdata
pg1-port=$port
pg1-socket-path=$sock
pg1-user=postgres
EOF
chmod 0644 "$conf"
install -d -o postgres -g postgres -m 0750 "$repo" "$bench/pgbackrest-lock" "$bench/pgbackrest-spool"
pgbr stanza-create > /dev/null

# The charm's unit: archiving on, through its config-changed hook.
"$agent" config --agent-dir "$adir" paths= \
  "postgresql-uri=postgresql://postgres@127.0.0.1:$port/postgres" "postgresql-password-file=$pwfile" \
  postgresql-mode=physical "postgresql-bin-dir=$pgbin" "postgresql-data-dir=$pgdata" \
  postgresql-wal-archive=true postgresql-archive-timeout=60 "local-store=$store" > /dev/null
hook() {
  "$agent" hook --agent-dir "$adir" config-changed > "$bench/hook.out" 2>&1 \
    || { cat "$bench/hook.out"; exit 1; }
  grep -qi blocked "$bench/hook.out" && { echo "the hook left the unit blocked:"; cat "$bench/hook.out"; exit 1; }
  return 0
}
hook
settings=$(find "$adir" -path '*/charm-backup-wal/settings.json' | head -n 1)
dispatch=${settings%/settings.json}/dispatch
if [ ! -f "$settings" ] || [ ! -x "$dispatch" ]; then
  echo "the hook installed no settings.json and dispatch"; cat "$bench/hook.out"; exit 1
fi
ours_cmd=$(sql "SHOW archive_command")
case $ours_cmd in *wal-push*) ;; *) echo "archive_command is not charm-backup's: $ours_cmd"; exit 1 ;; esac
echo "PostgreSQL 15 on 127.0.0.1:$port in $bench; $(pgbackrest version); $(nproc) cores"

# --- Archive lag -------------------------------------------------------------------------------
[ "$(sql "SHOW archive_timeout")" = "1min" ] || { echo "archive_timeout is $(sql "SHOW archive_timeout")"; exit 1; }
sql "CREATE TABLE lag_probe (at timestamptz)" > /dev/null
wait_archived "$(switch_wal)" 600
sql "INSERT INTO lag_probe VALUES (clock_timestamp())" > /dev/null
read -r commit_epoch lag_seg < <(sql "SELECT extract(epoch FROM max(at))::numeric(20,6), pg_walfile_name(pg_current_wal_insert_lsn()) FROM lag_probe" | tr '|' ' ')
echo "archive lag: one row committed on the idle server right after a segment switch; waiting for $lag_seg in the store"
while ! compgen -G "$store/wal/*/*/$lag_seg-*.gz" > /dev/null; do
  if [ "$(python3 -c "import sys,time; print(int(time.time() - float(sys.argv[1])))" "$commit_epoch")" -gt 600 ]; then
    echo "$lag_seg is not in the store after 600 s"; exit 1
  fi
  sleep 0.05
done
stored_epoch=$(now)
lag=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$commit_epoch" "$stored_epoch")

# --- Both archives from here on -----------------------------------------------------------------
both_cmd="cp %p $capture/%f && pgbackrest --config=$conf --stanza=bench archive-push %p && $ours_cmd"
psql_pg -d postgres -v "cmd=$both_cmd" <<< "ALTER SYSTEM SET archive_command = :'cmd'; SELECT pg_reload_conf();" > /dev/null
echo "loading pgbench data at scale $scale"
as_pg "$pgbin/createdb" -h "$sock" -p "$port" -U postgres pgbench
as_pg "$pgbin/pgbench" -i -q -s "$scale" -h "$sock" -p "$port" -U postgres pgbench > "$bench/pgbench-init.log" 2>&1 \
  || { cat "$bench/pgbench-init.log"; exit 1; }
sql CHECKPOINT > /dev/null
wait_archived "$(switch_wal)" 600

# --- Base backups, one after the other, before the load ---------------------------------------
base_lsn=$(sql "SELECT pg_current_wal_lsn()")
bench_time ours_backup "$agent" run --agent-dir "$adir" --format json create-backup
bench_time pgbr_backup runuser -u postgres -- pgbackrest "--config=$conf" --stanza=bench backup --type=full
# shellcheck disable=SC2154 # T_*: set by bench_time
echo "base backups: charm-backup create-backup ${T_ours_backup}s, pgbackrest backup --type=full ${T_pgbr_backup}s"

# --- The load, the target time ----------------------------------------------------------------
echo "pgbench (tpcb-like, $clients clients) until it has written $wal_mib MiB of WAL"
load_lsn=$(sql "SELECT pg_current_wal_lsn()")
first_seg=$(sql "SELECT pg_walfile_name('$load_lsn')")
pgb_run() {
  as_pg "$pgbin/pgbench" -n -T "$1" -c "$clients" -j 2 -h "$sock" -p "$port" -U postgres pgbench \
    >> "$bench/pgbench.log" 2>&1 || { tail "$bench/pgbench.log"; exit 1; }
}
while [ "$(sql "SELECT ((pg_current_wal_lsn() - '$load_lsn') / 1048576)::bigint")" -lt "$wal_mib" ]; do
  pgb_run 5
  sql CHECKPOINT > /dev/null
done
sleep 1.2
target_epoch=$(sql "SELECT extract(epoch FROM clock_timestamp())::numeric(20,6)")
target_pg=$(sql "SELECT to_char(to_timestamp($target_epoch) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
target_rfc=$(sql "SELECT to_char(to_timestamp($target_epoch) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || 'Z'")
target_rows=$(sql "SELECT count(*) FROM pgbench_history" pgbench)
target_lsn=$(sql "SELECT pg_current_wal_lsn()")
last_seg=$(sql "SELECT pg_walfile_name('$target_lsn')")
sleep 1.2
pgb_run 3
replay_mib=$(sql "SELECT ((pg_lsn('$target_lsn') - '$base_lsn') / 1048576)::bigint")
echo "target $target_pg: $target_rows rows in pgbench_history, $replay_mib MiB of WAL after the base backups;" \
  "waiting until both archives hold it all"
wait_archived "$(switch_wal)"

# --- Archiving throughput ------------------------------------------------------------------------
find "$capture" -maxdepth 1 -type f -name '????????????????????????' -printf '%f\n' | sort \
  | awk -v a="$first_seg" -v b="$last_seg" '$0 >= a && $0 <= b {print "'"$capture"'/" $0}' > "$bench/segments"
nseg=$(wc -l < "$bench/segments")
seg_bytes=$(xargs stat -c %s < "$bench/segments" | awk '{s += $1} END {print s + 0}')
cat > "$bench/push.sh" <<'EOF'
# push.sh LIST OUT CMD...: runs CMD for each WAL file LIST names, one at a time (@P@ is its
# path, @F@ its name), stopping at the first failure; appends each call's seconds to OUT.
set -euo pipefail
list=$1 out=$2; shift 2
while read -r p; do
  f=${p##*/} args=()
  for a in "$@"; do a=${a//@P@/$p}; args+=("${a//@F@/$f}"); done
  t0=$EPOCHREALTIME
  "${args[@]}"
  t1=$EPOCHREALTIME
  echo "$t0 $t1" | awk '{printf "%.6f\n", $2 - $1}' >> "$out"
done < "$list"
EOF
# push_settings DIR THREADS: a settings file for a store of its own, DIR/store: the hook's, with
# local-store and compression-threads changed in the config-get answer it replays.
push_settings() {
  local dir=$1 threads=$2
  install -d -m 0755 "$dir"; install -d -m 0711 "$dir/store"
  install -d -o postgres -g postgres -m 0700 "$dir/store/wal" "$dir/private"
  python3 - "$settings" "$dir/settings.json" "$dir/store" "$threads" <<'PY'
import json, sys
src, dst, store, threads = sys.argv[1:]
saved = json.load(open(src))
n = 0
for call in saved["calls"]:
    if call["tool"] == "config-get":
        cfg = json.loads(call["stdout"])
        cfg["local-store"] = store
        cfg["compression-threads"] = int(threads)
        call["stdout"] = json.dumps(cfg)
        n += 1
assert n, "no config-get call in the saved context"
json.dump(saved, open(dst, "w"))
PY
  chgrp postgres "$dir/settings.json"; chmod 0640 "$dir/settings.json"
}
# push NAME DIR CMD...: pushes the segments with CMD as the postgres user from the data
# directory, into DIR (checked to hold them all afterwards); sets T_NAME.
push() {
  local name=$1 dir=$2 n; shift 2
  install -o postgres -m 0644 /dev/null "$bench/lat.$name"
  xargs cat < "$bench/segments" > /dev/null
  sync
  # shellcheck disable=SC2016 # expanded by bash, from its arguments
  bench_time "$name" runuser -u postgres -- bash -c 'cd "$1" && shift && exec bash "$@"' _ "$pgdata" \
    "$bench/push.sh" "$bench/segments" "$bench/lat.$name" "$@"
  n=$(find "$dir" -type f -name '*.gz' | wc -l)
  [ "$n" -eq "$nseg" ] || { echo "$dir holds $n segments, not $nseg"; exit 1; }
  find "$dir" -type f -name '*.gz' -printf '%s\n' | awk '{s += $1} END {print s + 0}' > "$bench/size.$name"
}
echo "pushing $nseg segments ($((seg_bytes >> 20)) MiB) one at a time with each tool, $rounds rounds"
for r in $(seq "$rounds"); do
  push_settings "$bench/push-ours-$r" 0
  push_settings "$bench/push-ours1-$r" 2
  install -d -o postgres -g postgres -m 0750 "$bench/push-pgbr-$r"
  pgbr "--repo1-path=$bench/push-pgbr-$r" stanza-create > /dev/null
  push "push_ours_$r" "$bench/push-ours-$r/store/wal" \
    "$dispatch" wal-push "$bench/push-ours-$r/settings.json" @P@ @F@
  push "push_ours1_$r" "$bench/push-ours1-$r/store/wal" \
    "$dispatch" wal-push "$bench/push-ours1-$r/settings.json" @P@ @F@
  push "push_pgbr_$r" "$bench/push-pgbr-$r/archive" \
    pgbackrest "--config=$conf" --stanza=bench "--repo1-path=$bench/push-pgbr-$r" archive-push @P@
done

# --- Restore to the target time -------------------------------------------------------------------
# replay_phase FROM_BYTE: seconds from "starting point-in-time recovery" to "ready to accept
# connections" in the server log after FROM_BYTE, and the segments restored from the archive.
replay_phase() {
  tail -c "+$(( $1 + 1 ))" "$pglog" | python3 -c '
import datetime, re, sys
start = end = None; n = 0
def ts(line):  # the "waiting for server to start...." of pg_ctl may precede a line
    m = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+", line)
    return datetime.datetime.strptime(m.group(0), "%Y-%m-%d %H:%M:%S.%f")
for line in sys.stdin:
    if start is None:
        if "starting point-in-time recovery" in line: start = ts(line)
    elif "restored log file" in line and ".history" not in line: n += 1
    elif "database system is ready to accept connections" in line:
        end = ts(line); break
print(f"{(end - start).total_seconds():.2f} {n}" if start and end else "nan 0")'
}
# restored NAME FROM_BYTE: checks the server promoted; writes its replay phase and row count.
restored() {
  [ "$(sql "SELECT pg_is_in_recovery()")" = f ] || { echo "$1 left the server in recovery"; exit 1; }
  echo "$(replay_phase "$2") $(sql "SELECT count(*) FROM pgbench_history" pgbench)" > "$bench/replay.$1"
}
cat > "$bench/pgbr-restore.sh" <<'EOF'
# pgbr-restore.sh CONF PGDATA LOG SOCK PORT TARGET: pgBackRest's restore to TARGET, then the
# server started and waited for until it has promoted.
set -euo pipefail
conf=$1 pgdata=$2 log=$3 sock=$4 port=$5 target=$6
pgbackrest "--config=$conf" --stanza=bench restore --type=time "--target=$target" \
  --target-action=promote --target-timeline=current
pg_ctl -D "$pgdata" -l "$log" -w -t 3600 start > /dev/null
until [ "$(psql -X -At -h "$sock" -p "$port" -U postgres -d postgres -c 'SELECT pg_is_in_recovery()' 2> /dev/null)" = f ]; do
  sleep 0.1
done
EOF
echo "restoring to $target_pg with each tool, $rounds rounds"
for r in $(seq "$rounds"); do
  from=$(stat -c %s "$pglog")
  sync
  bench_time "restore_ours_$r" "$agent" run --agent-dir "$adir" --format json restore \
    "restore-to-time=$target_rfc" skip-backup=true
  restored "restore_ours_$r" "$from"

  as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop > /dev/null
  find "$pgdata" -mindepth 1 -delete
  from=$(stat -c %s "$pglog")
  sync
  bench_time "restore_pgbr_$r" runuser -u postgres -- env "PATH=$PATH" bash "$bench/pgbr-restore.sh" \
    "$conf" "$pgdata" "$pglog" "$sock" "$port" "$target_pg"
  restored "restore_pgbr_$r" "$from"
done

# --- The figures ---------------------------------------------------------------------------------
python3 - "$bench" "$rounds" "$nseg" "$seg_bytes" "$lag" "$replay_mib" "$target_rows" <<'PY'
import statistics, sys
bench, rounds, nseg, seg_bytes, lag, replay_mib, rows_t = sys.argv[1:]
rounds, nseg, seg_bytes, replay_mib, rows_t, lag = int(rounds), int(nseg), int(seg_bytes), int(replay_mib), int(rows_t), float(lag)
mib = 1 << 20
def secs(name):
    return float(open(f"{bench}/time.{name}").read().split()[0])
def best(kind):
    """The fastest of the rounds: its name, and every round's seconds."""
    all_ = [(secs(f"{kind}_{r}"), f"{kind}_{r}") for r in range(1, rounds + 1)]
    return min(all_)[1], [t for t, _ in all_]
def rounds_text(ts):
    return " ".join(f"{t:.2f}" for t in ts)
print()
print(f"WAL archiving: {nseg} segments ({seg_bytes / mib:.0f} MiB) of pgbench WAL, pushed one at a time "
      f"as the archiver does (best of {rounds} rounds)")
print(f"{'':46} {'seconds':>8} {'MiB/s':>7} {'median ms':>10} {'p95 ms':>7} {'stored MiB':>11}   rounds (s)")
push = {}
for label, kind in [
    ("charm-backup wal-push (gzip 6, one core)", "push_ours"),
    ("  the same, compression-threads=2", "push_ours1"),
    ("pgbackrest archive-push (gz 6, sync, 1 proc)", "push_pgbr"),
]:
    name, ts = best(kind)
    t = secs(name)
    push[kind] = t
    v = sorted(float(x) for x in open(f"{bench}/lat.{name}"))
    med, p95 = statistics.median(v) * 1000, v[min(len(v) - 1, int(len(v) * 0.95))] * 1000
    size = int(open(f"{bench}/size.{name}").read())
    print(f"{label:46} {t:8.2f} {seg_bytes / mib / t:7.1f} {med:10.0f} {p95:7.0f} {size / mib:11.1f}   {rounds_text(ts)}")
print()
print(f"archive lag, commit on an idle server right after a segment switch -> segment in the store "
      f"(archive_timeout=60): {lag:.1f} s")
print()
print(f"restore to the target time: {replay_mib} MiB of WAL written between the base backups and the target "
      f"(best of {rounds} rounds)")
print(f"{'':46} {'seconds':>8} {'replay s':>9} {'segments':>9} {'rows':>9}   rounds (s)")
rest, replay, rows_ok = {}, {}, True
for label, kind in [
    ("charm-backup restore restore-to-time (action)", "restore_ours"),
    ("pgbackrest restore --type=time + start", "restore_pgbr"),
]:
    name, ts = best(kind)
    rest[kind] = secs(name)
    rp, segs, rows = open(f"{bench}/replay.{name}").read().split()
    replay[kind] = float(rp)
    for r in range(1, rounds + 1):
        rows_ok &= int(open(f"{bench}/replay.{kind}_{r}").read().split()[2]) == rows_t
    print(f"{label:46} {rest[kind]:8.2f} {float(rp):9.2f} {int(segs):9d} {int(rows):9d}   {rounds_text(ts)}")
print(f"{'  (rows in pgbench_history at the target)':46} {'':8} {'':9} {'':9} {rows_t:9d}")
print("  seconds: the whole action (archives the running server's last WAL, stops it, restores the base")
print("  backup, replays, waits for the promotion, checkpoints) against pgbackrest restore into the emptied")
print("  data directory + pg_ctl start + wait for the promotion; replay s: from \"starting point-in-time")
print("  recovery\" to \"ready to accept connections\" in the server log; segments: restored from the archive")
print()
def row(name, value, target, ok):
    print(f"{name:52} {value:>9}   target {target:8} {'met' if ok else 'MISSED'}")
ratio = push["push_pgbr"] / push["push_ours"]
row("wal-push throughput relative to pgbackrest", f"{ratio:.2f}x", ">= 1.0x", ratio >= 1.0)
row("archive lag", f"{lag:.1f} s", "<= 65 s", lag <= 65)
ratio = rest["restore_ours"] / rest["restore_pgbr"]
row("restore-to-time relative to pgbackrest", f"{ratio:.2f}x", "<= 1.0x", ratio <= 1.0)
print(f"{'  (replay alone relative to pgbackrest)':52} {replay['restore_ours'] / replay['restore_pgbr']:>8.2f}x")
row("every restore has the target's rows", "yes" if rows_ok else "no", f"{rows_t}", rows_ok)
PY
