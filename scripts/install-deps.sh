#!/usr/bin/env bash
# Installs what ggaoed needs on a Debian/Ubuntu machine, and nothing that is already there.
#   scripts/install-deps.sh          runtime only (libaio1, iproute2)
#   scripts/install-deps.sh --demo   what `deno task demo` needs
#   scripts/install-deps.sh --test   what `deno task test` needs: real peers (aoetools, vblade,
#                                    tshark), qemu, Debian's kernel for the kernel-initiator test and
#                                    iPXE (ipxe.lkrn) for the sanboot tests, XFS (reflinked views),
#                                    promtool (package prometheus) to check the metrics exposition
#                                    a one-node Ceph cluster (mon, OSD, rbd CLI, librbd) for RBD
#                                    podman/runc/debootstrap for the container image test, and
#                                    systemd's systemd-analyze for the unit file (no systemd boot)
#   scripts/install-deps.sh --bench  what `deno task bench` needs: vblade, gcc and libc headers
#                                    (bench/kinit.c, bench/kecho.c), perf (--syscalls,
#                                    --perf-record), strace, and Ceph for `deno task bench-rbd`
set -euo pipefail
mode=${1:-}
pkgs=(libaio1 iproute2)
case "$mode" in
  --demo) ;;
  --test)
    pkgs+=(aoetools vblade tshark)                                # real AoE peers
    pkgs+=(qemu-system-x86 busybox-static e2fsprogs xz-utils cpio) # the kernel-initiator guest
    pkgs+=(ipxe xfsprogs)                                         # iPXE sanboot; views (reflinks)
    pkgs+=(gcc libc6-dev pkg-config fuse3 libfuse3-dev)           # storage fault fixtures (FUSE)
    pkgs+=(prometheus)                                            # promtool checks the metrics
    pkgs+=(ceph-mon ceph-osd ceph-common librbd-dev librados-dev)  # a one-node Ceph cluster
    pkgs+=(podman runc debootstrap systemd)                       # container image, systemd unit
    pkgs+=(linux-perf)                                            # the bench tests (perf stat)
    ;;
  --bench)
    pkgs+=(vblade gcc libc6-dev linux-perf strace)                # bench/kinit.c, kecho.c, perf
    pkgs+=(ceph-mon ceph-osd ceph-common librbd-dev librados-dev)  # bench-rbd
    ;;
  "") ;;
  *) echo "usage: $0 [--demo|--test|--bench]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "ggaoed needs these Debian packages: ${missing[*]} — run this as root (sudo $0 $mode)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$mode" = --test ] && [ -x scripts/kernel-initiator/prepare.sh ]; then
  bash scripts/kernel-initiator/prepare.sh
fi
