#!/usr/bin/env bash
# Prepares a guest for tests/kernel/: Debian's own kernel (the package linux-image-amd64 points
# at), the modules its AoE initiator and virtio NIC need, and a busybox initramfs whose /init
# loads them, brings eth0 up and runs a per-test script. Everything lands in .cache/kernel/.
#
#   scripts/kernel-initiator/prepare.sh          build if missing, else return at once
#   scripts/kernel-initiator/prepare.sh --force  rebuild
#
# Output: .cache/kernel/current.json  {"kernelVersion","vmlinuz","initrd","modules","e2fsprogs"}
# (paths relative to .cache/kernel/, so the checkout can move).
# Idempotent: a stamp holds the kernel version plus a hash of this script and guest/*, so a
# new kernel upload or a change to the guest's init rebuilds, and nothing else does.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache="$root/.cache/kernel"
force=${1:-}

die() { echo "kernel-initiator/prepare: $*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb busybox gzip sha256sum; do
  command -v "$tool" >/dev/null || die "missing '$tool' (Debian packages: apt, dpkg, busybox-static, gzip)"
done
# The initramfs runs busybox as its only userland, so it must be the static build.
busybox_bin=$(command -v busybox)
if ldd "$busybox_bin" >/dev/null 2>&1; then
  die "$busybox_bin is dynamically linked: install busybox-static"
fi

# Which kernel: KERNEL_PACKAGE overrides; otherwise whatever the meta package depends on now.
pkg=${KERNEL_PACKAGE:-}
if [ -z "$pkg" ]; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n -E 's/^ *Depends: (linux-image-[0-9][^ ]*-amd64)$/\1/p' | head -1 || true)
  if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
    # A fresh machine may not have package lists yet.
    apt-get update -qq >/dev/null
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
      sed -n -E 's/^ *Depends: (linux-image-[0-9][^ ]*-amd64)$/\1/p' | head -1 || true)
  fi
  [ -n "$pkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (run apt-get update)"
fi
kver=${pkg#linux-image-}

# Modules the guest loads, by name; their dependencies are resolved from the .ko files below.
wanted_modules=(virtio_pci virtio_net aoe)

script_hash=$( (cat "$0" "$here/guest/init" "$here/guest/guest-lib.sh") | sha256sum | cut -c1-16)
stamp_value="$kver $script_hash"
out="$cache/$kver"
if [ "$force" != --force ] && [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp_value" ] &&
  [ -f "$cache/current.json" ]; then
  echo "kernel-initiator: $kver already prepared in $out"
  exit 0
fi

echo "kernel-initiator: preparing $pkg"
mkdir -p "$cache/dl"
deb=$(ls "$cache/dl/${pkg}_"*_amd64.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  # apt-get download writes into the current directory; the _apt sandbox user usually cannot
  # write there, which apt only warns about when run as root.
  (cd "$cache/dl" && apt-get download -q "$pkg" 2>&1 | grep -v 'unsandboxed' || true)
  deb=$(ls "$cache/dl/${pkg}_"*_amd64.deb 2>/dev/null | head -1 || true)
  [ -n "$deb" ] || die "apt-get download $pkg produced no .deb"
fi

work="$cache/work.$$"
rm -rf "$work"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pkg"
dpkg-deb -x "$deb" "$work/pkg"
moddir="$work/pkg/lib/modules/$kver"
[ -f "$work/pkg/boot/vmlinuz-$kver" ] || die "no /boot/vmlinuz-$kver in $deb"
[ -d "$moddir" ] || die "no /lib/modules/$kver in $deb"

# The package has no modules.dep (depmod runs at install time), so read each module's
# "depends=" from its .modinfo section and order them dependencies first.
find_module() {
  local f
  f=$(find "$moddir/kernel" \( -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" \
    -o -name "$1.ko.gz" \) | head -1)
  [ -n "$f" ] || die "module $1 not found under $moddir"
  echo "$f"
}
plain_module() { # decompress if needed: busybox insmod takes plain ELF only
  local f=$1 dest=$2
  case "$f" in
    *.ko.xz) command -v xz >/dev/null || die "xz needed for $f (xz-utils)"; xz -dc "$f" >"$dest" ;;
    *.ko.zst) command -v zstd >/dev/null || die "zstd needed for $f (zstd)"; zstd -qdc "$f" >"$dest" ;;
    *.ko.gz) gzip -dc "$f" >"$dest" ;;
    *) cp "$f" "$dest" ;;
  esac
}
declare -A seen=()
order=()
visit() {
  local name=$1 deps dep
  [ -n "${seen[$name]:-}" ] && return 0
  seen[$name]=1
  plain_module "$(find_module "$name")" "$work/$name.ko"
  deps=$(grep -ao 'depends=[^[:cntrl:]]*' "$work/$name.ko" | head -1 | cut -d= -f2)
  for dep in ${deps//,/ }; do visit "$dep"; done
  order+=("$name")
}
for m in "${wanted_modules[@]}"; do visit "$m"; done

# The initramfs tree.
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,sbin,dev,proc,sys,tmp,etc,guest,lib/modules,lib64,lib/x86_64-linux-gnu}
cp "$busybox_bin" "$rootfs/bin/busybox"
for applet in $("$busybox_bin" --list); do
  [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
: >"$rootfs/lib/modules/order"
for m in "${order[@]}"; do
  cp "$work/$m.ko" "$rootfs/lib/modules/$m.ko"
  echo "$m" >>"$rootfs/lib/modules/order"
done
install -m 0755 "$here/guest/init" "$rootfs/init"
install -m 0644 "$here/guest/guest-lib.sh" "$rootfs/lib/guest-lib.sh"

# e2fsprogs for filesystem recipes: busybox has mke2fs but no e2fsck, so ship the host's real
# tools (with their shared libraries) when the host has them.
e2fs=false
if command -v e2fsck >/dev/null && command -v mke2fs >/dev/null; then
  for tool in e2fsck mke2fs; do
    src=$(command -v "$tool")
    mkdir -p "$rootfs/usr/sbin"
    cp "$src" "$rootfs/usr/sbin/$tool"
    for lib in $(ldd "$src" | grep -oE '/[^ ]+\.so[^ ]*'); do
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
  done
  # Drop busybox's weaker mke2fs links. busybox sh still runs its own applet for a bare
  # "mke2fs" whatever PATH says, so recipes call /usr/sbin/mke2fs by full path.
  rm -f "$rootfs/bin/mke2fs" "$rootfs/bin/mkfs.ext2"
  e2fs=true
fi

mkdir -p "$out"
(cd "$rootfs" && find . | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null) | gzip -9n >"$work/initrd"
# Pad to 512 bytes: the kernel only looks for a following (per-run) cpio archive at a 4-byte
# aligned offset, and skips zero padding between archives.
size=$(stat -c %s "$work/initrd")
pad=$(((512 - size % 512) % 512))
head -c "$pad" /dev/zero >>"$work/initrd"
cp "$work/pkg/boot/vmlinuz-$kver" "$out/vmlinuz"
mv "$work/initrd" "$out/initrd.img"
echo "$stamp_value" >"$out/stamp"

mods_json=$(printf '"%s",' "${order[@]}")
cat >"$cache/current.json.tmp" <<EOF
{
  "kernelVersion": "$kver",
  "vmlinuz": "$kver/vmlinuz",
  "initrd": "$kver/initrd.img",
  "modules": [${mods_json%,}],
  "e2fsprogs": $e2fs
}
EOF
mv "$cache/current.json.tmp" "$cache/current.json"
# Older kernels' packages and images are dead weight (about 80 MB each) once a new one is ready.
for old in "$cache"/dl/linux-image-*.deb; do
  [ "$old" = "$deb" ] || rm -f "$old"
done
for old in "$cache"/*/stamp; do
  [ -e "$old" ] && [ "$(dirname "$old")" != "$out" ] && rm -rf "$(dirname "$old")"
done
echo "kernel-initiator: ready: $out (modules: ${order[*]})"
