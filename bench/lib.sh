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
