import assert from "node:assert/strict";
import { Memory } from "../../ffi/memory.ts";
import {
  closeFd,
  fdatasync,
  fsyncPath,
  openStorage,
  pread,
  pwrite,
  setDirect,
} from "../../ffi/storage.ts";
import { SysError } from "../../ffi/errno.ts";
import { libc } from "../../ffi/libc.ts";
import { F_GETFL, O_DSYNC } from "../../ffi/constants.ts";
import { withLoopDevice } from "../../lab/files.ts";

// /var/tmp is on a disk file system here (tmpfs only gained O_DIRECT in Linux 6.6).
const DIR = "/var/tmp";

async function withTempFile(size: number, body: (path: string) => void | Promise<void>) {
  const path = await Deno.makeTempFile({ dir: DIR, prefix: "ggaoed-storage-" });
  try {
    await Deno.truncate(path, size);
    await body(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("openStorage reports a regular file's size and that it is not a block device", async () => {
  await withTempFile(3 * 1024 * 1024 + 512, (path) => {
    const s = openStorage(path, { readOnly: true, direct: false, exclusive: true });
    try {
      assert.equal(s.size, 3 * 1024 * 1024 + 512);
      assert.equal(s.blockDevice, false);
    } finally {
      closeFd(s.fd);
    }
  });
});

Deno.test("a file opened read-only refuses writes with EBADF", async () => {
  await withTempFile(4096, (path) => {
    const s = openStorage(path, { readOnly: true, direct: false, exclusive: false });
    try {
      assert.throws(
        () => pwrite(s.fd, new Uint8Array(new ArrayBuffer(512)), 0),
        (e: unknown) => e instanceof SysError && e.code === "EBADF",
      );
    } finally {
      closeFd(s.fd);
    }
  });
});

Deno.test("pwrite then pread through O_DIRECT round-trips aligned data, and fdatasync succeeds", async () => {
  await withTempFile(1 << 20, (path) => {
    const s = openStorage(path, { readOnly: false, direct: true, exclusive: false });
    const memory = Memory.allocate(8192);
    try {
      const out = memory.bytes.subarray(0, 4096);
      for (let i = 0; i < out.length; i++) out[i] = (i * 7 + 3) & 0xff;
      assert.equal(pwrite(s.fd, out, 65536), 4096);
      fdatasync(s.fd);
      const back = memory.bytes.subarray(4096, 8192);
      assert.equal(pread(s.fd, back, 65536), 4096);
      assert.deepEqual(back, out);
      // An O_DIRECT read at an unaligned file offset is refused with advice...
      const part = memory.bytes.subarray(4096, 4096 + 512);
      assert.throws(() => pread(s.fd, part, 65536 + 100), /EINVAL.*aligned/);
      // ...and succeeds once O_DIRECT is turned off.
      setDirect(s.fd, false);
      assert.equal(pread(s.fd, part, 65536 + 100), 512);
      assert.deepEqual(part, out.subarray(100, 612));
      setDirect(s.fd, true);
    } finally {
      memory.close();
      closeFd(s.fd);
    }
  });
});

Deno.test("pread stops at end of file and returns the short count", async () => {
  await withTempFile(1000, (path) => {
    const s = openStorage(path, { readOnly: true, direct: false, exclusive: false });
    try {
      assert.equal(pread(s.fd, new Uint8Array(new ArrayBuffer(600)), 600), 400);
    } finally {
      closeFd(s.fd);
    }
  });
});

Deno.test("fsyncPath flushes both a directory and a file by path", async () => {
  await withTempFile(10, (path) => {
    fsyncPath(DIR);
    fsyncPath(path);
    assert.throws(() => fsyncPath(`${path}.missing`), /ENOENT/);
  });
});

Deno.test("openStorage refuses what is neither a block device nor a regular file", () => {
  assert.throws(
    () => openStorage("/dev/null", { readOnly: true, direct: false, exclusive: false }),
    /\/dev\/null: not a block device or regular file/,
  );
});

Deno.test("openStorage measures a block device with BLKGETSIZE64", async () => {
  // A loop device over a small file.
  await withTempFile(2 * 1024 * 1024, async (path) => {
    await withLoopDevice(path, (device) => {
      const s = openStorage(device, { readOnly: false, direct: true, exclusive: true });
      try {
        assert.equal(s.blockDevice, true);
        assert.equal(s.size, 2 * 1024 * 1024);
        // O_EXCL: a second exclusive open of the same device is refused with advice.
        assert.throws(
          () => openStorage(device, { readOnly: true, direct: false, exclusive: true }),
          /EBUSY.*is in use \(mounted, or exported elsewhere\)/,
        );
      } finally {
        closeFd(s.fd);
      }
    });
  });
});

Deno.test("openStorage with sync opens with O_DSYNC (F_GETFL shows it); without, it does not", async () => {
  await withTempFile(4096, (path) => {
    for (const sync of [true, false]) {
      const s = openStorage(path, { readOnly: false, direct: false, exclusive: false, sync });
      try {
        const flags = Number(libc().fcntl(s.fd, F_GETFL, 0n));
        assert.equal((flags & O_DSYNC) !== 0, sync, `flags 0${flags.toString(8)}`);
        const data = new Uint8Array(new ArrayBuffer(512)).fill(sync ? 1 : 2);
        assert.equal(pwrite(s.fd, data, 512), 512);
      } finally {
        closeFd(s.fd);
      }
    }
  });
});
