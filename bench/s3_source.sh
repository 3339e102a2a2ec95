#!/usr/bin/env bash
# S3 buckets as a source: charm-backup's snapshot of buckets (objects streamed into the archive,
# small ones fetched 8 at a time) against what Deis's guide has operators do, the buckets
# downloaded to disk with a standard client (boto3, 8 threads, as `s3cmd sync` does one at a
# time) then `tar czf` and `sha256sum`; side by side in one run, for many small objects and for
# a few large ones, on a loopback SeaweedFS.
#
#   bash bench/s3_source.sh [BENCH_DIR]     (default /var/tmp/charm-backup-bench-s3src)
#
# Target (S3-source issue): >= 2x faster than download + tar czf + sha256sum for both sets.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
bench=${1:-/var/tmp/charm-backup-bench-s3src}
. bench/lib.sh
bench_apt time bc
cargo build --release --all-features --quiet
agent=$top/target/release/charm-backup
mkdir -p "$bench"
bench_weed "$bench/weed" small,large

# The buckets: 4,000 small objects (1 to 32 KiB of JSON-like text, as a registry's manifests
# and WAL metadata are) and 6 large ones of 64 MiB (half random, half text).
.venv-s3/bin/python - "$endpoint" <<'EOF'
import sys, os, random, concurrent.futures, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
rnd = random.Random(7)
def small(i):
    n = rnd.randint(1 << 10, 32 << 10)
    body = ('{"layer": %d, "digest": "%064x", "pad": "%s"}\n' % (i, rnd.getrandbits(256), "x" * 40)).encode()
    body = (body * (n // len(body) + 1))[:n]
    s3.put_object(Bucket="small", Key=f"registry/v2/blobs/{i:05d}/data", Body=body, ContentType="application/json")
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(small, range(4000)))
for i in range(6):
    half = os.urandom(32 << 20)
    text = (b"2026-12-05 02:30:00 UTC [1234] LOG:  checkpoint complete\n" * ((32 << 20) // 56 + 1))[: 32 << 20]
    s3.put_object(Bucket="large", Key=f"wal/base-{i}.tar", Body=half + text)
EOF
echo "buckets: small $(du -sh "$bench/weed" | cut -f1) on disk in all; $(nproc) cores; S3 at $endpoint (SeaweedFS)"

rel=(--relation "s3-source:endpoint=$endpoint" --relation "s3-source:access-key=AKID"
     --relation "s3-source:secret-key=SECRETKEY" --relation "s3-source:s3-uri-style=path")
rm -rf "$bench/agent" "$bench/out" "$bench"/time.* ; mkdir -p "$bench/out"

ours() { # ours NAME BUCKET
  sync
  bench_time "$1" "$agent" run --agent-dir "$bench/agent" "${rel[@]}" --relation "s3-source:bucket=$2" \
    --config paths= --config "s3-source-buckets=$2" snapshot "target=$bench/out/$1" --format json
}
theirs() { # theirs NAME BUCKET
  rm -rf "$bench/dl"; mkdir -p "$bench/dl"; sync
  bench_time "$1" sh -c '
    "$0"/.venv-s3/bin/python - "$1" "$2" "$3" <<EOF
import sys, os, concurrent.futures, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
bucket, out = sys.argv[2], sys.argv[3]
keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])]
def get(k):
    path = os.path.join(out, bucket, k)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s3.download_file(bucket, k, path)
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(get, keys))
EOF
    tar czf "$3.tar.gz" -C "$3" . && sha256sum "$3.tar.gz" > /dev/null' "$top" "$endpoint" "$2" "$bench/dl"
}

rounds=${ROUNDS:-3}
for r in $(seq "$rounds"); do
  for set in small large; do
    ours "ours_${set}_$r" "$set"
    theirs "theirs_${set}_$r" "$set"
  done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '\n%-44s %9s %9s\n' "median of $rounds rounds" seconds "peak MiB"
for set in small large; do
  for who in ours theirs; do
    ts=(); ms=()
    for r in $(seq "$rounds"); do
      eval "ts+=(\$T_${who}_${set}_$r); ms+=(\$M_${who}_${set}_$r)"
    done
    t=$(median "${ts[@]}"); m=$(median "${ms[@]}")
    eval "MED_${who}_${set}=$t"
    label="charm-backup snapshot of bucket $set"
    [ "$who" = theirs ] && label="boto3 download + tar czf + sha256sum ($set)"
    printf '%-44s %9.2f %9.1f\n' "$label" "$t" "$(echo "$m / 1024" | bc -l)"
  done
done
echo
for set in small large; do
  eval "o=\$MED_ours_$set; t=\$MED_theirs_$set"
  printf 'bucket %-6s: charm-backup is %.2fx faster (target >= 2x)\n' "$set" "$(echo "$t / $o" | bc -l)"
done
