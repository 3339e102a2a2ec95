#!/usr/bin/env bash
# Snapshot and restore benchmark: charm-backup against the GNU tools operators would otherwise
# use, side by side in one run, on a >= 1 GiB tree of mixed real files.
#
#   bash bench/snapshot.sh [BENCH_DIR]      (default /var/tmp/charm-backup-bench; needs ~4 GiB)
#
# Prints time, output size and peak memory of each, and the ratios the snapshot issue targets:
# snapshot >= 3x faster than `tar czf` + `sha256sum`, >= 1.3x faster than `tar | pigz -p 2` with
# the hash, at <= 1.02x pigz's size; peak memory <= 64 MiB; restore (verify + extract) >= 2x
# faster than `sha256sum -c` + `tar xzf`.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
bench=${1:-/var/tmp/charm-backup-bench}

. bench/lib.sh
bench_apt pigz time
cargo build --release --all-features --quiet
agent=$top/target/release/charm-backup

data=$bench/data
bench_tree "$bench"
out=$bench/out
rm -rf "$out" "$bench/agent" "$bench/gnu-x"; mkdir -p "$out"
size_mb=$(du -sm "$data" | cut -f1)
files=$(find "$data" -type f | wc -l)
echo "tree: $size_mb MiB in $files files; $(nproc) cores"
"$agent" config --agent-dir "$bench/agent" "paths=$data" "local-store=$bench/store" >/dev/null

sync
bench_time ours "$agent" run --agent-dir "$bench/agent" snapshot "target=$out/ours" --format json
ours_file=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["charm-backup/0"]["results"]["snapshot"]["path"])' "$bench/stdout.ours")
bench_time gnu sh -c "tar czf '$out/gnu.tar.gz' -C '$bench' data && sha256sum '$out/gnu.tar.gz' > '$out/gnu.sha256'"
bench_time pigz sh -c "tar cf - -C '$bench' data | pigz -p 2 | tee '$out/pigz.tar.gz' | sha256sum > '$out/pigz.sha256'"
S_ours=$(stat -c %s "$ours_file"); S_gnu=$(stat -c %s "$out/gnu.tar.gz"); S_pigz=$(stat -c %s "$out/pigz.tar.gz")

# Restore: ours verifies (checksum, every entry) then extracts and swaps; GNU checks the sum,
# then extracts into a fresh directory.
sum=$(sha256sum "$ours_file" | cut -d' ' -f1)
# Each restore starts with no write-back pending from the steps before.
sync
bench_time ours_restore "$agent" run --agent-dir "$bench/agent" restore "path=$ours_file" "sha256=$sum" skip-backup=true allow-external-symlinks=true --format json
# Our restore removes the replaced tree in the background once it has answered: let that
# finish before timing GNU, so it does not slow the other side.
while ls -d "$bench"/.data.charm-backup-trash-* >/dev/null 2>&1; do sleep 0.2; done
sync
mkdir -p "$bench/gnu-x"
bench_time gnu_restore sh -c "cd '$out' && sha256sum -c --quiet gnu.sha256 && tar xzf gnu.tar.gz -C '$bench/gnu-x'"
rm -rf "$bench/gnu-x"

python3 - "$T_ours" "$T_gnu" "$T_pigz" "$S_ours" "$S_gnu" "$S_pigz" "$M_ours" "$M_gnu" "$M_pigz" "$T_ours_restore" "$T_gnu_restore" "$M_ours_restore" <<'PY'
import sys
to, tg, tp, so, sg, sp, mo, mg, mp, tor, tgr, mor = map(float, sys.argv[1:])
mib = 1 << 20
print()
print(f"{'snapshot':34} {'seconds':>8} {'size MiB':>9} {'peak MiB':>9}")
print(f"{'charm-backup snapshot':34} {to:8.2f} {so/mib:9.1f} {mo/1024:9.1f}")
print(f"{'tar czf + sha256sum':34} {tg:8.2f} {sg/mib:9.1f} {mg/1024:9.1f}")
print(f"{'tar cf - | pigz -p 2 | sha256sum':34} {tp:8.2f} {sp/mib:9.1f} {mp/1024:9.1f}")
print(f"{'restore':34} {'seconds':>8} {'':>9} {'peak MiB':>9}")
print(f"{'charm-backup restore':34} {tor:8.2f} {'':>9} {mor/1024:9.1f}")
print(f"{'sha256sum -c + tar xzf':34} {tgr:8.2f}")
print()
def row(name, value, target, ok):
    print(f"{name:58} {value:>8}   target {target:10} {'met' if ok else 'MISSED'}")
row("snapshot speed-up over tar czf + sha256sum", f"{tg/to:.2f}x", ">= 3x", tg/to >= 3)
row("snapshot speed-up over tar | pigz -p 2 with the hash", f"{tp/to:.2f}x", ">= 1.3x", tp/to >= 1.3)
row("snapshot size relative to pigz", f"{so/sp:.3f}x", "<= 1.02x", so/sp <= 1.02)
row("snapshot peak memory (agent and action together)", f"{mo/1024:.1f} MiB", "<= 64 MiB", mo/1024 <= 64)
row("restore speed-up over sha256sum -c + tar xzf", f"{tgr/tor:.2f}x", ">= 2x", tgr/tor >= 2)
row("restore peak memory", f"{mor/1024:.1f} MiB", "<= 64 MiB", mor/1024 <= 64)
PY
