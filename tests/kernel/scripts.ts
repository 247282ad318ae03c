/**
 * Guest script recipes for runGuest (tests/kernel/harness.ts), and the host-side expectations
 * to compare their results with. Scripts run under busybox sh with the helpers of
 * scripts/kernel-initiator/guest/guest-lib.sh (result, wait_for_device, drop_caches).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";

/** Bytes per sector of the pattern; each sector carries its own number. */
export const PATTERN_SECTOR = 512;
const SECTORS_PER_MIB = (1024 * 1024) / PATTERN_SECTOR;
/** The guest writes the pattern 16 MiB at a time (see patternWriteAndMd5). */
const CHUNK_SECTORS = 16 * SECTORS_PER_MIB;

function devicePath(device: string): { name: string; path: string } {
  // "e0.1" or "/dev/etherd/e0.1"
  const name = device.replace(/^\/dev\/etherd\//, "");
  if (!/^e\d+\.\d+$/.test(name)) throw new Error(`not an AoE device name: ${device}`);
  return { name, path: `/dev/etherd/${name}` };
}

function checkSeed(seed: string): string {
  // Goes into a shell command and an awk program unquoted-safe only if kept to this alphabet.
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(seed)) throw new Error(`bad pattern seed: ${seed}`);
  return seed;
}

/**
 * The pattern sector `n` holds: "<seed> sector <n>", space padded to 511 bytes, then "\n".
 * Every sector differs, so a misplaced, duplicated or lost sector changes the checksum.
 */
export function patternSector(seed: string, n: number): string {
  return `${seed} sector ${n}`.padEnd(PATTERN_SECTOR - 1, " ") + "\n";
}

/** MD5 (hex) of the whole pattern for a device of `sizeMiB` MiB. */
export function patternMd5(sizeMiB: number, seed = "ggaoed"): string {
  checkSeed(seed);
  const hash = createHash("md5");
  const sectors = (sizeMiB * 1024 * 1024) / PATTERN_SECTOR;
  const enc = new TextEncoder();
  // Hash in 1 MiB batches: one update per sector would be needlessly slow.
  const perBatch = 2048;
  for (let s = 0; s < sectors; s += perBatch) {
    let batch = "";
    for (let i = s; i < Math.min(sectors, s + perBatch); i++) batch += patternSector(seed, i);
    hash.update(enc.encode(batch));
  }
  return hash.digest("hex");
}

/** Writes `seed`'s pattern over a new file of `sizeMiB` MiB at `path` (a golden image). */
export async function writePatternFile(path: string, sizeMiB: number, seed: string): Promise<void> {
  checkSeed(seed);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  for (let mib = 0; mib < sizeMiB; mib++) {
    let batch = "";
    for (let i = mib * SECTORS_PER_MIB; i < (mib + 1) * SECTORS_PER_MIB; i++) {
      batch += patternSector(seed, i);
    }
    const bytes = enc.encode(batch);
    for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
  }
}

/**
 * MD5 (hex) of a device of `sizeMiB` MiB written with one pattern after another: each layer's
 * seed over MiB `from` to `to`, later layers over earlier ones (layeredOverwrite's end state).
 */
export function layeredPatternMd5(
  sizeMiB: number,
  layers: { seed: string; from: number; to: number }[],
): string {
  const hash = createHash("md5");
  const enc = new TextEncoder();
  for (let mib = 0; mib < sizeMiB; mib++) {
    const layer = layers.findLast((l) => l.from <= mib && mib < l.to);
    if (!layer) throw new Error(`no layer covers MiB ${mib}`);
    let batch = "";
    for (let i = mib * SECTORS_PER_MIB; i < (mib + 1) * SECTORS_PER_MIB; i++) {
      batch += patternSector(checkSeed(layer.seed), i);
    }
    hash.update(enc.encode(batch));
  }
  return hash.digest("hex");
}

/**
 * Compares the first `mib` MiB of a host file (an image export) with `seed`'s pattern: the
 * sectors that differ, and how many of those hold `oldSeed`'s pattern instead.
 */
export async function countWrongSectors(
  file: string,
  mib: number,
  seed: string,
  oldSeed: string,
): Promise<{ wrong: number; stale: number; first: number[] }> {
  const data = await Deno.readFile(file);
  const dec = new TextDecoder();
  let wrong = 0;
  let stale = 0;
  const first: number[] = [];
  for (let n = 0; n < mib * SECTORS_PER_MIB; n++) {
    const got = dec.decode(data.subarray(n * PATTERN_SECTOR, (n + 1) * PATTERN_SECTOR));
    if (got === patternSector(seed, n)) continue;
    wrong++;
    if (first.length < 5) first.push(n);
    if (got === patternSector(oldSeed, n)) stale++;
  }
  return { wrong, stale, first };
}

/** MD5 (hex) of a host file, streamed. */
export async function fileMd5(path: string): Promise<string> {
  const hash = createHash("md5");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/**
 * The host-side check of guestScripts.mkfsFsckAndMd5: mke2fs and e2fsck succeeded in the guest,
 * the guest read back exactly the backing file's bytes, and the host's own `e2fsck -fn` finds
 * the filesystem that reached the backing file clean. `context` ends every failure message.
 */
export async function assertFilesystemRoundTrip(
  results: Map<string, string>,
  disk: string,
  context: string,
): Promise<void> {
  assert.equal(results.get("mkfs_rc"), "0", context);
  assert.equal(results.get("fsck_rc"), "0", context);
  assert.equal(results.get("md5"), await fileMd5(disk), `guest and host disagree${context}`);
  const fsck = await new Deno.Command("e2fsck", { args: ["-fn", disk] }).output();
  assert.equal(fsck.code, 0, new TextDecoder().decode(fsck.stdout));
}

const waitStep = (name: string, seconds: number) => `
wait_for_device ${name} ${seconds} || {
  result error "device ${name} not found after ${seconds}s"
  ls -l /dev/etherd 2>&1
  dmesg | tail -20
  exit 10
}
result size_bytes "$(blockdev --getsize64 /dev/etherd/${name})"
# Data bytes per AoE request the driver settled on (from the MTU and the target's answer).
result payload_bytes "$(cat '/sys/block/etherd!${name}/payload' 2>/dev/null)"
`;

// Whole-device read, bypassing the guest page cache so the bytes come from the target.
const readMd5 = (path: string, key: string) => `
drop_caches ${path}
t0=$(cut -d' ' -f1 /proc/uptime)
${key}=$({ dd if=${path} bs=1M iflag=direct 2>/tmp/dd-read.err; echo $? >/tmp/dd-read.rc; } |
  md5sum | cut -d' ' -f1)
[ "$(cat /tmp/dd-read.rc)" = 0 ] || {
  cat /tmp/dd-read.err
  result error "reading ${path} failed"
  exit 13
}
t1=$(cut -d' ' -f1 /proc/uptime)
result ${key} "$${key}"
result ${key}_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')"
`;

// Reads MiB 0 to `mib` of the device with O_DIRECT and counts the sectors that do not hold
// `seed`'s pattern (PREFIXwrong_sectors) and those among them that hold `oldSeed`'s
// (PREFIXstale_sectors); PREFIXchecked_sectors is the number read.
const countNew = (path: string, mib: number, seed: string, oldSeed: string, prefix: string) =>
  `dd if=${path} bs=1M count=${mib} iflag=direct 2>/tmp/dd-check.err |
  awk -v new=${seed} -v old=${oldSeed} '
    { n = NR - 1
      if ($0 != sprintf("%-${PATTERN_SECTOR - 1}s", new " sector " n)) {
        wrong++
        if ($0 == sprintf("%-${PATTERN_SECTOR - 1}s", old " sector " n)) stale++
        if (shown++ < 5) print "wrong sector " n ": " substr($0, 1, 40)
      }
    }
    END { print "@@RESULT ${prefix}checked_sectors " NR
          print "@@RESULT ${prefix}wrong_sectors " wrong + 0
          print "@@RESULT ${prefix}stale_sectors " stale + 0 }'`;

// Waits until the driver lists `paths` interfaces for the device (one target per guest NIC),
// reports them as netif, and mounts debugfs for the driver's per-target page.
const waitPaths = (name: string, paths: number) =>
  `n=0
while [ "$(tr ',' '\\n' <'/sys/block/etherd!${name}/netif' | grep -c .)" -lt ${paths} ]; do
  [ $n -ge 30 ] && {
    result error "the device has paths on $(cat '/sys/block/etherd!${name}/netif') only"
    exit 16
  }
  echo discover >/dev/etherd/discover 2>/dev/null
  sleep 1
  n=$((n + 1))
done
result netif "$(cat '/sys/block/etherd!${name}/netif')"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null`;

/** Guest script recipes. Each exits 0 only when every step succeeded. */
export const guestScripts = {
  /**
   * Waits for the AoE device and reports what the driver learned from Query Config and
   * IDENTIFY, without any I/O. Results: size_bytes, payload_bytes, and from
   * /sys/block/etherd!<name>/: state, mac, netif, fwver (firmware-version, hex).
   */
  discoverOnly(device: string, options: { waitSeconds?: number } = {}): string {
    const { name } = devicePath(device);
    const sys = `/sys/block/etherd!${name}`;
    return `${waitStep(name, options.waitSeconds ?? 30)}
for attr in state mac netif; do
  result "$attr" "$(cat '${sys}/'$attr 2>/dev/null)"
done
result fwver "$(cat '${sys}/firmware-version' 2>/dev/null)"
exit 0
`;
  },

  /**
   * Waits for the AoE device, checks its size is `sizeMiB` MiB, writes the pattern over all of
   * it (buffered, then fsync), drops caches, reads the whole device back with O_DIRECT.
   * Results: size_bytes, payload_bytes, write_seconds (dd only),
   * generate_and_write_seconds, md5 (to compare with patternMd5(sizeMiB, seed) and the
   * md5 of the target's backing store), md5_seconds.
   */
  patternWriteAndMd5(
    device: string,
    sizeMiB: number,
    options: { seed?: string; waitSeconds?: number } = {},
  ): string {
    const { name, path } = devicePath(device);
    const seed = checkSeed(options.seed ?? "ggaoed");
    if (!Number.isInteger(sizeMiB) || sizeMiB <= 0) throw new Error(`bad size ${sizeMiB}`);
    return `${waitStep(name, options.waitSeconds ?? 30)}
${patternWrite(path, sizeMiB, seed)}
${readMd5(path, "md5")}
exit 0
`;
  },

  /**
   * The pattern round trip of {@link patternWriteAndMd5} over several paths (one target per
   * guest NIC, the same shelf.slot): waits until the driver lists `paths` interfaces for the
   * device, then writes and reads as patternWriteAndMd5, pausing `pauseSeconds` between the
   * write and the read (a discovery at the end of it). Phases are announced as results
   * (`phase write`, `phase pause`, `phase read`, `phase done`) so that the host can act in
   * the middle of one (kill a target). Results as patternWriteAndMd5, plus netif (the
   * interfaces of every path), chunk_N_seconds (each 16 MiB of the write, guest clock).
   */
  multipathPatternRoundTrip(
    device: string,
    sizeMiB: number,
    options: { seed?: string; paths: number; pauseSeconds: number },
  ): string {
    const { name, path } = devicePath(device);
    const seed = checkSeed(options.seed ?? "ggaoed");
    return `${waitStep(name, 60)}
${waitPaths(name, options.paths)}
result phase write
${patternWrite(path, sizeMiB, seed)}
result phase pause
sleep ${options.pauseSeconds}
echo discover >/dev/etherd/discover 2>/dev/null
result phase read
${readMd5(path, "md5")}
result phase done
cat /sys/kernel/debug/aoe/${name} 2>/dev/null
exit 0
`;
  },

  /**
   * Newer data over older on a device with several paths, for a host that hangs and comes
   * back. Waits for `paths` paths, then:
   *   phase write: the pattern `oldSeed` over the whole device (as patternWriteAndMd5);
   *   phase read (with `readBack`): reads it all back (result old_md5);
   *   phase overwrite: the pattern `newSeed` over MiB 0 to `overwriteMiB`;
   *   phase settle: waits for the host to type `go` (wait_host, at most 300 s);
   *   phase check: reads MiB 0 to `overwriteMiB` back with O_DIRECT and counts the sectors
   *     that do not hold `newSeed`'s (wrong_sectors) and those among them that hold
   *     `oldSeed`'s (stale_sectors), then reads the whole device (md5: compare with
   *     layeredPatternMd5);
   *   phase alone (with `alone`): waits for the host's next `go` (it stops a path), then
   *     reads MiB 0 to `overwriteMiB` again and counts as in check (results prefixed
   *     `alone_`);
   *   phase done: the driver's debugfs page of the device, then the number of answers it got
   *     to frames it no longer waited for (result unexpected_rsp, from /dev/etherd/err).
   * Results as patternWriteAndMd5, the overwrite's prefixed `new_`.
   */
  layeredOverwrite(
    device: string,
    sizeMiB: number,
    options: {
      paths: number;
      oldSeed: string;
      newSeed: string;
      overwriteMiB: number;
      readBack?: boolean;
      alone?: boolean;
    },
  ): string {
    const { name, path } = devicePath(device);
    const oldSeed = checkSeed(options.oldSeed);
    const newSeed = checkSeed(options.newSeed);
    const top = options.overwriteMiB;
    if (!Number.isInteger(top) || top <= 0 || top > sizeMiB) throw new Error(`bad MiB ${top}`);
    return `${waitStep(name, 60)}
${waitPaths(name, options.paths)}
result phase write
${patternWrite(path, sizeMiB, oldSeed)}
${
      options.readBack
        ? `result phase read
${readMd5(path, "old_md5")}`
        : ""
    }
result phase overwrite
${patternWrite(path, sizeMiB, newSeed, [0, top], "new_")}
result phase settle
wait_host go 300 || {
  result error "the host never said go"
  exit 17
}
result phase check
drop_caches ${path}
${countNew(path, top, newSeed, oldSeed, "")}
${readMd5(path, "md5")}
${
      options.alone
        ? `result phase alone
wait_host go 300 || {
  result error "the host never said go"
  exit 17
}
drop_caches ${path}
${countNew(path, top, newSeed, oldSeed, "alone_")}`
        : ""
    }
result phase done
cat /sys/kernel/debug/aoe/${name} 2>/dev/null
# The driver reports answers to frames it no longer waits for on /dev/etherd/err, not in dmesg.
result unexpected_rsp "$(timeout 2 cat /dev/etherd/err 2>/dev/null | grep -c 'unexpected rsp')"
exit 0
`;
  },

  /**
   * Waits for the AoE device, writes the guest file `file` (a whole number of sectors, e.g. one
   * passed in runGuest's `files`) at sector `sector` (buffered, then fsync), drops caches and
   * reads the same sectors back with O_DIRECT. Results: size_bytes, payload_bytes, written_md5
   * (of the file), read_md5 (of what the target returned).
   */
  writeFileAt(device: string, file: string, sector: number): string {
    const { name, path } = devicePath(device);
    if (!/^\/guest\/[A-Za-z0-9_.-]+$/.test(file)) throw new Error(`bad guest file ${file}`);
    if (!Number.isInteger(sector) || sector < 0) throw new Error(`bad sector ${sector}`);
    return `${waitStep(name, 30)}
count=$(($(wc -c <${file}) / ${PATTERN_SECTOR}))
dd if=${file} of=${path} bs=${PATTERN_SECTOR} seek=${sector} conv=notrunc,fsync 2>/tmp/dd.err || {
  cat /tmp/dd.err
  result error "writing ${file} to ${path} failed"
  exit 12
}
drop_caches ${path}
result written_md5 "$(md5sum <${file} | cut -d' ' -f1)"
result read_md5 "$(dd if=${path} bs=${PATTERN_SECTOR} skip=${sector} count=$count iflag=direct 2>/dev/null |
  md5sum | cut -d' ' -f1)"
exit 0
`;
  },

  /**
   * What one host sees of a device that may show each host its own data (per-host views): waits
   * for the device, checks that MiB 0 to `mib` hold `expect`'s pattern (results
   * before_wrong_sectors, and before_stale_sectors: those holding `other`'s instead); with
   * `write`, writes `write`'s pattern over MiB 0 to `mib` (as patternWriteAndMd5) and checks
   * them again against it (after_wrong_sectors, after_stale_sectors: still `expect`'s); then
   * reads the whole device (md5: compare with layeredPatternMd5).
   */
  patternOverlay(
    device: string,
    sizeMiB: number,
    options: { mib: number; expect: string; other: string; write?: string },
  ): string {
    const { name, path } = devicePath(device);
    const expect = checkSeed(options.expect);
    const other = checkSeed(options.other);
    const top = options.mib;
    if (!Number.isInteger(top) || top <= 0 || top > sizeMiB) throw new Error(`bad MiB ${top}`);
    const write = options.write === undefined
      ? ""
      : `${patternWrite(path, sizeMiB, checkSeed(options.write), [0, top])}
drop_caches ${path}
${countNew(path, top, options.write, expect, "after_")}`;
    return `${waitStep(name, 30)}
drop_caches ${path}
${countNew(path, top, expect, other, "before_")}
${write}
${readMd5(path, "md5")}
exit 0
`;
  },

  /**
   * Waits for the AoE device, makes an ext2 filesystem on it with e2fsprogs' mke2fs, checks it
   * with `e2fsck -fn` after dropping caches (so the check reads from the target), then reads
   * the whole device back. Needs the e2fsprogs that prepare.sh copies in (PreparedGuest
   * .e2fsprogs). Results: size_bytes, payload_bytes, mkfs_rc, fsck_rc, md5 (compare with the backing store's
   * md5, and run the host's `e2fsck -fn` on it), md5_seconds.
   */
  mkfsFsckAndMd5(device: string, options: { waitSeconds?: number } = {}): string {
    const { name, path } = devicePath(device);
    return `${waitStep(name, options.waitSeconds ?? 30)}
# Full paths: busybox sh runs its own applets (its mke2fs lacks -t) before searching PATH.
/usr/sbin/mke2fs -t ext2 -F -q -E nodiscard ${path}
rc=$?
result mkfs_rc $rc
[ $rc = 0 ] || exit 14
drop_caches ${path}
/usr/sbin/e2fsck -fn ${path}
rc=$?
result fsck_rc $rc
[ $rc = 0 ] || exit 15
${readMd5(path, "md5")}
exit 0
`;
  },
};

/**
 * Writes the pattern over the whole device at `path` (`sizeMiB` MiB), or over MiB
 * `range[0]` to `range[1]` of it, 16 MiB at a time with fsync. Results: write_seconds (dd
 * only), chunk_N_seconds (each chunk, N its first sector), generate_and_write_seconds (each
 * with `prefix` in front of the key when given).
 */
function patternWrite(
  path: string,
  sizeMiB: number,
  seed: string,
  range: [number, number] = [0, sizeMiB],
  prefix = "",
): string {
  const sectors = range[1] * SECTORS_PER_MIB;
  return `[ "$(blockdev --getsize64 ${path})" = "${sizeMiB * 1024 * 1024}" ] || {
  result error "device size is not ${sizeMiB} MiB"
  exit 11
}
# The pattern is generated into tmpfs a chunk at a time and then written with dd: busybox awk
# writing straight into a pipe is several times slower than the AoE path under TCG, and
# chunks keep guest memory use flat whatever the device size.
n=${sectors}
chunk=${CHUNK_SECTORS}
s=${range[0] * SECTORS_PER_MIB}
wt=0
t0=$(cut -d' ' -f1 /proc/uptime)
while [ $s -lt $n ]; do
  e=$((s + chunk))
  [ $e -gt $n ] && e=$n
  awk -v seed=${seed} -v a=$s -v b=$e \\
    'BEGIN { for (x = a; x < b; x++) printf "%-${PATTERN_SECTOR - 1}s\\n", seed " sector " x }' \\
    >/tmp/chunk || exit 12
  w0=$(cut -d' ' -f1 /proc/uptime)
  dd if=/tmp/chunk of=${path} bs=1M seek=$((s / ${SECTORS_PER_MIB})) conv=notrunc,fsync \\
    2>/tmp/dd-write.err || {
    cat /tmp/dd-write.err
    result error "pattern write failed at sector $s"
    exit 12
  }
  w1=$(cut -d' ' -f1 /proc/uptime)
  wt=$(awk -v t="$wt" -v a="$w0" -v b="$w1" 'BEGIN{printf "%.2f", t+b-a}')
  result ${prefix}chunk_\${s}_seconds "$(awk -v a="$w0" -v b="$w1" 'BEGIN{printf "%.2f", b-a}')"
  s=$e
done
rm -f /tmp/chunk
t1=$(cut -d' ' -f1 /proc/uptime)
result ${prefix}write_seconds "$wt"
result ${prefix}generate_and_write_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')"`;
}
