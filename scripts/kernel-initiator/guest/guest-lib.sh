# Helpers sourced before every guest script (busybox sh).

# result KEY VALUE...: a machine-readable line for the host (tests/kernel/harness.ts).
result() {
  k=$1
  shift
  echo "@@RESULT $k $*"
}

# wait_for_device NAME SECONDS: waits for /dev/etherd/NAME (e.g. e0.1), asking for discovery
# every second, since the first Query Config broadcast may precede the target being ready.
wait_for_device() {
  _dev=/dev/etherd/$1
  _n=0
  while [ ! -b "$_dev" ]; do
    [ "$_n" -ge "$2" ] && return 1
    [ -c /dev/etherd/discover ] && echo discover >/dev/etherd/discover 2>/dev/null
    sleep 1
    _n=$((_n + 1))
  done
  # The node appears before the size is known on some kernels; wait for a non-zero size.
  _n=0
  while [ "$(blockdev --getsize64 "$_dev" 2>/dev/null || echo 0)" = 0 ]; do
    [ "$_n" -ge "$2" ] && return 1
    sleep 1
    _n=$((_n + 1))
  done
  return 0
}

# drop_caches DEVICE: flushes and forgets the page cache so the next read goes to the target.
drop_caches() {
  blockdev --flushbufs "$1" 2>/dev/null
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

# wait_host WORD SECONDS: waits until the host types the line WORD on the serial console
# (runGuest's onStart), at most SECONDS; returns 1 on timeout.
wait_host() {
  _end=$(($(cut -d. -f1 /proc/uptime) + $2))
  while [ "$(cut -d. -f1 /proc/uptime)" -lt "$_end" ]; do
    _line=
    read -r -t 5 _line </dev/console || continue
    [ "$(echo "$_line" | tr -d '\r')" = "$1" ] && return 0
  done
  return 1
}
