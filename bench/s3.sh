#!/usr/bin/env bash
# create-backup benchmark: to the local store and to a loopback S3 server (SeaweedFS), against
# `tar czf` + `sha256sum` + an upload with a standard S3 client (boto3, multipart), side by
# side in one run on a >= 1 GiB tree; then list-backups over 5,000 backups in the bucket.
#
#   bash bench/s3.sh [BENCH_DIR]      (default /var/tmp/charm-backup-bench; needs ~4 GiB)
#
# Targets (create-backup issue): to S3 <= 1.2x the time to the local store; peak memory
# <= 64 MiB + part size x parts in flight; list-backups over 5,000 backups <= 2 s.
#
# The local and S3 runs are made three ways, 3 interleaved rounds each: with the server on the
# same cores as the backup; with the server on a core of its own (taskset) and the backup on
# the other, as a unit and a remote S3 server are; and, as root with cgroup v1, with CPU quotas
# of 1.5 cores for the backup (compression-threads=2) and 0.5 for the server. The first way's
# ratio counts the server's own CPU as ours; the target is judged on the others.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
bench=${1:-/var/tmp/charm-backup-bench}
. bench/lib.sh
bench_apt time util-linux
cargo build --release --all-features --quiet
agent=$top/target/release/charm-backup
bench_tree "$bench"
data=$bench/data

bench_weed "$bench/weed" backups,listing

rm -rf "$bench/agent" "$bench/store" "$bench/out" "$bench"/time.* "$bench"/server_cpu.*; mkdir -p "$bench/out"
"$agent" config --agent-dir "$bench/agent" "paths=$data" "local-store=$bench/store" >/dev/null
rel=(--relation "s3-parameters:bucket=backups" --relation "s3-parameters:endpoint=$endpoint"
     --relation "s3-parameters:access-key=AKID" --relation "s3-parameters:secret-key=SECRETKEY"
     --relation "s3-parameters:s3-uri-style=path")
# Our part size and parts in flight, from the source: the memory limit and boto3's settings follow.
part_mib=$(( $(sed -n 's/^pub const PART_BYTES: usize = \([0-9]*\) << 20;/\1/p' src/store/s3/mod.rs) ))
in_flight=$(sed -n 's/^pub const PARTS_IN_FLIGHT: usize = \([0-9]*\);/\1/p' src/store/s3/mod.rs)
export PART_MIB=$part_mib IN_FLIGHT=$in_flight
echo "tree: $(du -sm "$data" | cut -f1) MiB; $(nproc) cores; S3 at $endpoint (SeaweedFS); parts of $part_mib MiB, $in_flight in flight"

# CPU seconds the server has used so far.
weed_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$weed_pid/stat"; }
# timed NAME [taskset -c N]: one create-backup to the store NAME names (local or s3), after
# writing back what earlier runs left dirty, so no run's fsync pays for another's data.
timed() {
  local name=$1; shift
  local store=(); [[ $name == s3* ]] && store=("${rel[@]}")
  sync
  bench_time "$name" "$@" "$agent" run --agent-dir "$bench/agent" "${store[@]}" create-backup --format json
}
all_cores=0-$(( $(nproc) - 1 ))
# CPU quotas: cg_move GROUP PID moves a process into a capped group ("" for the root group);
# "${cg_agent[@]}" CMD... runs a command in the backup's.
cgroups=""
[ -w /sys/fs/cgroup/cpu/cgroup.procs ] && cgroups=/sys/fs/cgroup/cpu
if [ -n "$cgroups" ]; then
  mkdir -p "$cgroups/charm-backup-bench-agent" "$cgroups/charm-backup-bench-weed"
  echo 150000 > "$cgroups/charm-backup-bench-agent/cpu.cfs_quota_us"
  echo 50000 > "$cgroups/charm-backup-bench-weed/cpu.cfs_quota_us"
  trap 'kill $weed_pid 2>/dev/null || true; sleep 0.5; rmdir "$cgroups"/charm-backup-bench-* 2>/dev/null || true' EXIT
else
  echo "no writable cgroup v1 cpu controller: the runs with CPU quotas are left out"
fi
cg_move() { echo "$2" > "$cgroups/${1:+charm-backup-bench-$1/}cgroup.procs"; }
cg_agent=(sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cgroups/charm-backup-bench-agent")
rounds=3
for r in $(seq $rounds); do
  # 1. Everything on the machine's cores: the server's own work (SeaweedFS hashes each part
  #    three times with MD5) takes cores from the backup, as no remote server would.
  timed "local_$r"
  w0=$(weed_cpu); timed "s3_$r"; w1=$(weed_cpu)
  echo "$w0 $w1" > "$bench/server_cpu.$r"
  # 2. The server on a core of its own, as a remote one has: the backup gets the other core,
  #    for both stores, so the ratio is what the upload itself costs.
  taskset -a -p -c 1 "$weed_pid" > /dev/null
  timed "local1_$r" taskset -c 0
  timed "s31_$r" taskset -c 0
  taskset -a -p -c "$all_cores" "$weed_pid" > /dev/null
  # 3. Likewise with the backup's two compression threads: CPU quotas of 1.5 cores for the
  #    backup and 0.5 for the server (cgroup v1's cpu controller).
  if [ -n "$cgroups" ]; then
    cg_move weed "$weed_pid"
    "$agent" config --agent-dir "$bench/agent" compression-threads=2 > /dev/null
    timed "localq_$r" "${cg_agent[@]}"
    timed "s3q_$r" "${cg_agent[@]}"
    "$agent" config --agent-dir "$bench/agent" --reset compression-threads > /dev/null
    cg_move "" "$weed_pid"
  fi
done
cat > "$bench/upload.py" <<'PY'
import os, sys, boto3
from boto3.s3.transfer import TransferConfig
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
config = TransferConfig(multipart_chunksize=int(os.environ["PART_MIB"]) << 20, max_concurrency=int(os.environ["IN_FLIGHT"]))
s3.upload_file(sys.argv[2], "backups", "gnu/backup.tar.gz", Config=config)
PY
bench_time gnu sh -c "tar czf '$bench/out/gnu.tar.gz' -C '$bench' data && sha256sum '$bench/out/gnu.tar.gz' > /dev/null && .venv-s3/bin/python '$bench/upload.py' '$endpoint' '$bench/out/gnu.tar.gz'"

echo "putting 5,000 backups (archive + metadata.json) into bucket 'listing'"
cat > "$bench/fill.py" <<'PY'
import sys, json, boto3
from concurrent.futures import ThreadPoolExecutor
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
def put(i):
    bid = "2026-01-01T%02d:%02d:%02dZ" % (i // 3600, (i // 60) % 60, i % 60)
    s3.put_object(Bucket="listing", Key=f"backup/{bid}/charm-backup-backup.tar.gz", Body=b"x" * 100)
    s3.put_object(Bucket="listing", Key=f"backup/{bid}/metadata.json", Body=json.dumps({"id": bid, "type": "full", "status": "finished"}).encode())
with ThreadPoolExecutor(16) as ex:
    list(ex.map(put, range(5000)))
PY
.venv-s3/bin/python "$bench/fill.py" "$endpoint"
relist=("${rel[@]}"); relist[1]="s3-parameters:bucket=listing"
bench_time list "$agent" run --agent-dir "$bench/agent" "${relist[@]}" list-backups format=json --format json
count=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["charm-backup/0"]["results"]["backups"]; print(json.loads(r)["total"])' "$bench/stdout.list")

python3 - "$bench" "$rounds" "$T_gnu" "$T_list" "$count" <<'PY'
import os, statistics, sys
bench, rounds, tg, tlist, n = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
def runs(name):
    return [tuple(map(float, open(f"{bench}/time.{name}_{r}").read().split())) for r in range(1, rounds + 1)]
def med(name, i):
    return statistics.median(run[i] for run in runs(name))
tl, ts, tl1, ts1 = (med(k, 0) for k in ("local", "s3", "local1", "s31"))
ml, ms, ms1 = (max(run[1] for run in runs(k)) for k in ("local", "s3", "s31"))
server = statistics.median(b - a for a, b in (map(float, open(f"{bench}/server_cpu.{r}").read().split()) for r in range(1, rounds + 1)))
print()
print(f"create-backup: median seconds and highest peak memory of {rounds} interleaved rounds")
def line(name, key, mem=None):
    each = " ".join(f"{run[0]:.2f}" for run in runs(key))
    t = med(key, 0)
    m = f"{mem/1024:9.1f}" if mem is not None else " " * 9
    print(f"{name:56} {t:8.2f} {m}   ({each})")
print(f"{'':56} {'seconds':>8} {'peak MiB':>9}")
line("charm-backup to the local store", "local", ml)
line("charm-backup to S3, server on the same cores", "s3", ms)
print(f"{'  CPU seconds the server used for it':56} {server:8.2f}")
line("charm-backup to the local store, on core 0", "local1")
line("charm-backup to S3 on core 0, server on core 1", "s31", ms1)
quota = os.path.exists(f"{bench}/time.s3q_1")
if quota:
    tlq, tsq = med("localq", 0), med("s3q", 0)
    line("charm-backup to the local store, 2 threads on 1.5 cores", "localq")
    msq = max(run[1] for run in runs("s3q"))
    line("charm-backup to S3, 2 threads on 1.5 cores, server on 0.5", "s3q", msq)
print(f"{'tar czf + sha256sum + boto3 upload_file':56} {tg:8.2f}")
print(f"{'list-backups over %d backups in S3' % n:56} {tlist:8.2f}")
print()
limit = 64 + int(os.environ["PART_MIB"]) * int(os.environ["IN_FLIGHT"])
def row(name, value, target, ok):
    print(f"{name:56} {value:>9}   target {target:12} {'met' if ok else 'MISSED'}")
row("to S3 relative to the local store, server apart", f"{ts1/tl1:.2f}x", "<= 1.2x", ts1/tl1 <= 1.2)
if quota:
    row("  the same with 2 threads, CPU quotas", f"{tsq/tlq:.2f}x", "<= 1.2x", tsq/tlq <= 1.2)
print(f"{'to S3 relative to the local store, server on our cores':56} {ts/tl:>8.2f}x   (the server's own CPU: {server:.1f} s)")
row("to S3 speed-up over tar + sha256sum + boto3", f"{tg/ts:.2f}x", "(faster)", tg > ts)
peak = max(ms, ms1, msq if quota else 0)
row("peak memory to S3 (agent and action), any run", f"{peak/1024:.1f} MiB", f"<= {limit} MiB", peak/1024 <= limit)
row("list-backups over 5,000 backups", f"{tlist:.2f} s", "<= 2 s", tlist <= 2 and n == 5000)
PY
