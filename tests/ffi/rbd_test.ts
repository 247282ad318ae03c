/**
 * The librbd binding (ffi/rbd.ts) against a real one-node Ceph cluster (lab/ceph.ts):
 * asynchronous I/O through the eventfd, metadata, features and size, snapshots, the safe
 * defaults for several clients, timeouts, and the errors people see.
 */
import assert from "node:assert/strict";
import { IOCB_CMD_PREADV, IOCB_CMD_PWRITEV } from "../../ffi/constants.ts";
import { SysError } from "../../ffi/errno.ts";
import { Epoll, EPOLLIN, EventFd } from "../../ffi/events.ts";
import { Memory } from "../../ffi/memory.ts";
import {
  _setCephLibraryNames,
  EBLOCKLISTED,
  EVENT_TYPE_EVENTFD,
  parseImageSpec,
  RADOS_DEFAULT_OPTIONS,
  RadosCluster,
  RBD_FEATURE_EXCLUSIVE_LOCK,
  RBD_FEATURE_LAYERING,
  RBD_FEATURE_NAMES,
  RBD_IMAGE_INFO,
  RBD_IMAGE_OPTION_CLONE_FORMAT,
  RBD_IMAGE_SPEC,
  RBD_MAX_IOVECS,
  RbdAioContext,
  RbdImage,
} from "../../ffi/rbd.ts";
import { CephCluster, withCephCluster } from "../../lab/ceph.ts";
import { firstDifference } from "../../lab/files.ts";
import { withNetLab } from "../../lab/netns.ts";

const MiB = 1024 * 1024;
const ETIMEDOUT = 110;

/** An image's AIO context with its own eventfd and epoll, for tests. */
class Io {
  readonly efd = EventFd.open();
  readonly epoll = Epoll.open();
  readonly aio: RbdAioContext;
  readonly slots: Int32Array;
  /** Wake-ups and eventfd counts seen by the last `collect`. */
  wakes = 0;
  signals = 0;

  constructor(image: RbdImage, slots = 64) {
    this.epoll.add(this.efd.fd, EPOLLIN, 1);
    this.aio = image.openAio(slots, this.efd);
    this.slots = new Int32Array(slots);
  }

  /** Submits slots 0..count-1 and waits (epoll on the eventfd) for their results. */
  run(count: number, timeoutMs = 15_000): number[] {
    for (let i = 0; i < count; i++) this.slots[i] = i;
    assert.equal(this.aio.submit(this.slots, count), count);
    return this.collect(count, timeoutMs);
  }

  collect(count: number, timeoutMs = 15_000): number[] {
    const results: number[] = new Array(count);
    let got = 0;
    this.wakes = 0;
    this.signals = 0;
    const deadline = performance.now() + timeoutMs;
    while (got < count) {
      assert.ok(performance.now() < deadline, `only ${got} of ${count} completions`);
      if (this.epoll.wait(200) === 0) continue;
      this.wakes++;
      this.signals += this.efd.drain();
      // A small `max` exercises partial reaps: what is left comes with the next call.
      for (let n = this.aio.reap(7); n > 0; n = this.aio.reap(7)) {
        for (let i = 0; i < n; i++) {
          const slot = this.aio.eventSlot(i);
          assert.equal(results[slot], undefined, `slot ${slot} completes once`);
          results[slot] = this.aio.eventResult(i);
          got++;
        }
      }
    }
    assert.equal(this.aio.inFlight, 0);
    return results;
  }

  /** Waits up to `ms` for completions without reaping them: how many eventfd signals came. */
  pending(ms: number): number {
    const deadline = performance.now() + ms;
    let signals = 0;
    while (performance.now() < deadline) {
      if (this.epoll.wait(Math.max(1, Math.ceil(deadline - performance.now()))) > 0) {
        signals += this.efd.drain();
      }
    }
    return signals;
  }

  /** One request on slot 0: a single-iovec read or write of `memory[0, length)`. */
  one(opcode: number, offset: number, memory: Memory, length: number): number {
    this.aio.prepareVector(0, opcode, offset, 1);
    this.aio.setIovec(0, 0, memory, 0, length);
    return this.run(1)[0];
  }

  flush(): number {
    this.aio.prepareSync(0);
    return this.run(1)[0];
  }

  close(): void {
    this.aio.close();
    this.epoll.close();
    this.efd.close();
  }
}

function pattern(bytes: Uint8Array, seed: number): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seed * 131 + i * 7 + (i >> 9)) & 0xff;
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const at = firstDifference(actual, expected);
  assert.equal(at, -1, `${what}: first difference at byte ${at}`);
}

/** A conf whose monitor address has nothing listening (a port just released). */
async function unreachableConf(dir: string): Promise<string> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const conf = `${dir}/unreachable.conf`;
  await Deno.writeTextFile(
    conf,
    `[global]\nmon host = [v2:127.0.0.1:${port}]\nauth client required = none\n`,
  );
  return conf;
}

Deno.test("parseImageSpec reads POOL/IMAGE and POOL/IMAGE@SNAP and explains anything else", () => {
  assert.deepEqual(parseImageSpec("rbd/disk0"), { pool: "rbd", image: "disk0" });
  assert.deepEqual(parseImageSpec("ssd/vm-1@before"), {
    pool: "ssd",
    image: "vm-1",
    snapshot: "before",
  });
  for (const bad of ["disk0", "rbd/", "/disk", "rbd/a/b", "rbd/a@", "rbd/a@b@c", "rbd/a b"]) {
    assert.throws(() => parseImageSpec(bad), /write POOL\/IMAGE, or POOL\/IMAGE@SNAP/, bad);
  }
});

Deno.test("rbd_image_info_t, rbd_image_spec_t and the librbd constants match rbd/librbd.h", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-rbd-layout-" });
  try {
    const features = Object.keys(RBD_FEATURE_NAMES).map((name) =>
      `printf("${name} %llu\\n", (unsigned long long)RBD_FEATURE_${
        name === "striping" ? "STRIPINGV2" : name.toUpperCase().replaceAll("-", "_")
      });`
    );
    await Deno.writeTextFile(
      `${dir}/layout.c`,
      `#include <stdio.h>
#include <stddef.h>
#include <rbd/librbd.h>
int main(void) {
printf("size %zu\\n", sizeof(rbd_image_info_t));
printf("imageSize %zu\\n", offsetof(rbd_image_info_t, size));
printf("objSize %zu\\n", offsetof(rbd_image_info_t, obj_size));
printf("numObjs %zu\\n", offsetof(rbd_image_info_t, num_objs));
printf("order %zu\\n", offsetof(rbd_image_info_t, order));
printf("EVENT_TYPE_EVENTFD %d\\n", EVENT_TYPE_EVENTFD);
printf("specSize %zu\\n", sizeof(rbd_image_spec_t));
printf("specId %zu\\n", offsetof(rbd_image_spec_t, id));
printf("specName %zu\\n", offsetof(rbd_image_spec_t, name));
printf("CLONE_FORMAT %d\\n", RBD_IMAGE_OPTION_CLONE_FORMAT);
${features.join("\n")}
return 0;
}
`,
    );
    const cc = await new Deno.Command("gcc", {
      args: ["-o", `${dir}/layout`, `${dir}/layout.c`],
      stderr: "piped",
    }).output();
    assert.ok(cc.success, `gcc (needs librbd-dev):\n${new TextDecoder().decode(cc.stderr)}`);
    const run = await new Deno.Command(`${dir}/layout`, { stdout: "piped" }).output();
    const c = new Map(
      new TextDecoder().decode(run.stdout).trim().split("\n").map((l) => {
        const [k, v] = l.split(" ");
        return [k, Number(v)];
      }),
    );
    for (const [field, offset] of Object.entries(RBD_IMAGE_INFO)) {
      assert.equal(offset, c.get(field), `RBD_IMAGE_INFO.${field}`);
    }
    assert.equal(EVENT_TYPE_EVENTFD, c.get("EVENT_TYPE_EVENTFD"));
    assert.equal(RBD_IMAGE_SPEC.size, c.get("specSize"), "sizeof(rbd_image_spec_t)");
    assert.equal(RBD_IMAGE_SPEC.id, c.get("specId"), "rbd_image_spec_t.id");
    assert.equal(RBD_IMAGE_SPEC.name, c.get("specName"), "rbd_image_spec_t.name");
    assert.equal(RBD_IMAGE_OPTION_CLONE_FORMAT, c.get("CLONE_FORMAT"));
    for (const [name, bit] of Object.entries(RBD_FEATURE_NAMES)) {
      assert.equal(bit, c.get(name), `feature ${name}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a missing librbd or librados is an error that says what to install", async () => {
  for (const names of [{ rbd: "librbd-missing.so.1" }, { rados: "librados-missing.so.2" }]) {
    _setCephLibraryNames(names);
    try {
      await assert.rejects(
        RadosCluster.connect({ conf: "/nonexistent/ceph.conf" }),
        (e: Error) => {
          const missing = Object.values(names)[0];
          assert.match(e.message, new RegExp(`^${missing.replaceAll(".", "\\.")} could not be`));
          assert.match(e.message, /apt-get install librbd1/);
          return true;
        },
      );
    } finally {
      _setCephLibraryNames(null);
    }
  }
});

Deno.test("an unreachable cluster fails with ETIMEDOUT and advice within client_mount_timeout (5 s)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-rbd-" });
  try {
    const conf = await unreachableConf(dir);
    const started = performance.now();
    const error = await RadosCluster.connect({ conf }).then(
      () => assert.fail("connected to nothing"),
      (e) => e,
    );
    const elapsed = performance.now() - started;
    assert.ok(error instanceof SysError, String(error));
    assert.equal(error.errno, ETIMEDOUT);
    assert.match(error.message, /rados_connect\(client\.admin, .*unreachable\.conf\): ETIMEDOUT/);
    assert.match(error.message, /no monitor answered within client_mount_timeout \(5 s\)/);
    // Without the timeout librados would wait its default 300 s: a busy machine adds far less.
    assert.ok(elapsed >= 4500 && elapsed < 30_000, `failed after ${elapsed.toFixed(0)} ms`);
    // A missing conf file is reported at once, naming the file.
    assert.throws(
      () => RadosCluster.connectSync({ conf: `${dir}/none.conf` }),
      /rados_conf_read_file\(.*none\.conf\): ENOENT .* set ceph-conf/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("librbd against a one-node cluster", async (t) => {
  await withCephCluster({}, async (cluster) => {
    console.log(`  cluster up in ${cluster.bringUpMs} ms`);
    const client = await RadosCluster.connect({ conf: cluster.conf, user: cluster.user });
    try {
      await imageSteps(t, cluster, client);
    } finally {
      client.close();
    }
  });
});

async function imageSteps(t: Deno.TestContext, cluster: CephCluster, client: RadosCluster) {
  await t.step("connect sets the safe defaults; pass-through options override them", async () => {
    assert.equal(client.confGet("rbd_cache"), "false");
    assert.equal(client.confGet("rados_osd_op_timeout"), "5");
    assert.equal(client.confGet("rados_mon_op_timeout"), "5");
    assert.equal(client.confGet("client_mount_timeout"), "5");
    assert.deepEqual(Object.keys(RADOS_DEFAULT_OPTIONS).sort(), [
      "client_mount_timeout",
      "rados_mon_op_timeout",
      "rados_osd_op_timeout",
      "rbd_cache",
    ]);
    const other = await RadosCluster.connect({
      conf: cluster.conf,
      options: { rados_osd_op_timeout: "7", rbd_cache: "true" },
    });
    try {
      assert.equal(other.confGet("rados_osd_op_timeout"), "7");
      assert.equal(other.confGet("rbd_cache"), "true");
      assert.equal(other.confGet("rados_mon_op_timeout"), "5");
    } finally {
      other.close();
    }
    assert.throws(
      () => RadosCluster.connectSync({ conf: cluster.conf, options: { no_such_option: "1" } }),
      /rados_conf_set\(no_such_option=1\): ENOENT .*'no_such_option' is not a Ceph option/,
    );
  });

  await cluster.createImage("data", { sizeBytes: 16 * MiB });

  await t.step(
    "another user connects with its own keyring; an unknown one is refused",
    async () => {
      const keyring = await cluster.createUser("ggaoed");
      const user = await RadosCluster.connect({
        conf: cluster.conf,
        user: "ggaoed",
        options: { keyring },
      });
      try {
        assert.equal(user.name, "client.ggaoed");
        const image = await user.openImage({ pool: cluster.pool, image: "data" });
        assert.equal(image.size(), 16 * MiB);
        image.close();
      } finally {
        user.close();
      }
      await assert.rejects(
        RadosCluster.connect({ conf: cluster.conf, user: "nobody" }),
        /rados_connect\(client\.nobody, .*\): (EACCES|EPERM|ENOENT)/,
      );
    },
  );

  await t.step("opening a missing pool or image names it", async () => {
    await assert.rejects(
      client.openImage({ pool: "nopool", image: "data" }),
      /rados_ioctx_create\(nopool\): ENOENT .*pool 'nopool' does not exist/,
    );
    await assert.rejects(
      client.openImage({ pool: cluster.pool, image: "nothere" }),
      /rbd_open\(rbd\/nothere\): ENOENT .*rbd ls rbd/,
    );
  });

  await t.step(
    "aio writev over many slots at once lands byte-exact (rbd export) and reads back with readv",
    async () => {
      const image = client.openImageSync({ pool: cluster.pool, image: "data" });
      const io = new Io(image, 64);
      const source = Memory.allocate(8 * MiB);
      const back = Memory.allocate(8 * MiB);
      const exported = `${cluster.dir}/data.raw`;
      try {
        pattern(source.bytes, 3);
        // 64 slots of 128 KiB, each four iovecs of uneven lengths, submitted in reverse order,
        // written at image offsets 0, 128 KiB, ... (slot 31 straddles the 4 MiB object boundary
        // once shifted by 64 KiB).
        const slotBytes = 128 * 1024;
        const base = 64 * 1024;
        const cuts = [512, 3584, 61440, 65536];
        for (let s = 0; s < 64; s++) {
          io.aio.prepareVector(s, IOCB_CMD_PWRITEV, base + s * slotBytes, cuts.length);
          let at = s * slotBytes;
          cuts.forEach((length, j) => {
            io.aio.setIovec(s, j, source, at, length);
            at += length;
          });
          io.slots[63 - s] = s;
        }
        assert.equal(io.aio.submit(io.slots, 64), 64);
        assert.equal(io.aio.inFlight, 64);
        const written = io.collect(64);
        assert.deepEqual(written, new Array(64).fill(slotBytes));
        assert.ok(io.signals >= 1 && io.signals <= 64, `eventfd counted ${io.signals}`);
        assert.equal(io.flush(), 0, "rbd_aio_flush completes with 0");

        // Read back through other iovec splits: one slot per 256 KiB, RBD_MAX_IOVECS iovecs.
        const readBytes = 256 * 1024;
        const piece = readBytes / RBD_MAX_IOVECS;
        for (let s = 0; s < 32; s++) {
          io.aio.prepareVector(s, IOCB_CMD_PREADV, base + s * readBytes, RBD_MAX_IOVECS);
          for (let j = 0; j < RBD_MAX_IOVECS; j++) {
            io.aio.setIovec(s, j, back, s * readBytes + j * piece, piece);
          }
        }
        assert.deepEqual(io.run(32), new Array(32).fill(readBytes));
        assertSameBytes(back.bytes, source.bytes, "readv after writev");

        // The cluster's own client sees the same bytes.
        await cluster.exportImage("data", exported);
        const file = await Deno.readFile(exported);
        assert.equal(file.length, 16 * MiB);
        assertSameBytes(file.subarray(base, base + 8 * MiB), source.bytes, "rbd export");
        assert.ok(file.subarray(0, base).every((b) => b === 0), "bytes before the writes stay 0");
      } finally {
        io.close();
        image.close();
        source.close();
        back.close();
        await Deno.remove(exported).catch(() => {});
      }
    },
  );

  await t.step("300 requests in flight at once all complete (more than one poll batch)", () => {
    const image = client.openImageSync({ pool: cluster.pool, image: "data" });
    const io = new Io(image, 300);
    const buffer = Memory.allocate(300 * 4096);
    try {
      for (let s = 0; s < 300; s++) {
        io.aio.prepareVector(s, IOCB_CMD_PREADV, s * 8192, 1);
        io.aio.setIovec(s, 0, buffer, s * 4096, 4096);
        io.slots[s] = s;
      }
      assert.equal(io.aio.submit(io.slots, 300), 300);
      // Wait until librbd has them all, then take them in one call.
      const deadline = performance.now() + 15_000;
      while (io.signals < 300 && performance.now() < deadline) {
        if (io.epoll.wait(200) > 0) io.signals += io.efd.drain();
      }
      assert.equal(io.signals, 300, "one eventfd count per completion");
      assert.equal(io.aio.reap(), 300);
      const slots = new Set<number>();
      for (let i = 0; i < 300; i++) {
        slots.add(io.aio.eventSlot(i));
        assert.equal(io.aio.eventResult(i), 4096);
      }
      assert.equal(slots.size, 300);
      assert.equal(io.aio.inFlight, 0);
    } finally {
      io.close();
      image.close();
      buffer.close();
    }
  });

  await t.step(
    "reads at or past the end complete with -EINVAL; one across the end comes back short",
    () => {
      const image = client.openImageSync({ pool: cluster.pool, image: "data" });
      const io = new Io(image, 8);
      const buffer = Memory.allocate(8192);
      try {
        const size = image.size();
        const reads = [size, size + 4096, size - 1024, size - 4096];
        reads.forEach((offset, s) => {
          io.aio.prepareVector(s, IOCB_CMD_PREADV, offset, 1);
          io.aio.setIovec(s, 0, buffer, 0, 4096);
        });
        assert.deepEqual(io.run(reads.length), [-22, -22, 1024, 4096]);
      } finally {
        io.close();
        image.close();
        buffer.close();
      }
    },
  );

  await t.step("metadata: set, get, list, remove, as the rbd CLI sees it", async () => {
    const image = client.openImageSync({ pool: cluster.pool, image: "data" });
    try {
      const long = "m".repeat(6000); // longer than the first 4 KiB buffer
      image.metadataSet("ggaoed.config", "shelf 1 slot 2 — ünïcode");
      image.metadataSet("ggaoed.macmask", long);
      assert.equal(image.metadataGet("ggaoed.config"), "shelf 1 slot 2 — ünïcode");
      assert.equal(image.metadataGet("ggaoed.macmask"), long);
      assert.equal(image.metadataGet("ggaoed.absent"), undefined);
      const spec = `${cluster.pool}/data`;
      assert.equal(
        (await cluster.rbd(["image-meta", "get", spec, "ggaoed.config"])).trim(),
        "shelf 1 slot 2 — ünïcode",
      );
      await cluster.rbd(["image-meta", "set", spec, "from.cli", "42"]);
      for (let i = 0; i < 70; i++) image.metadataSet(`page.${String(i).padStart(2, "0")}`, `${i}`);
      const all = image.metadataList();
      assert.equal(all.size, 73, "listing pages past 64 keys");
      assert.equal(all.get("from.cli"), "42");
      assert.equal(all.get("ggaoed.macmask"), long);
      assert.equal(all.get("page.69"), "69");
      assert.equal(image.metadataRemove("ggaoed.config"), true);
      assert.equal(image.metadataRemove("ggaoed.config"), false);
      assert.equal(image.metadataGet("ggaoed.config"), undefined);
    } finally {
      image.close();
    }
  });

  await t.step(
    "nonblocking metadata and size calls; a prefix lists only its keys; closeAsync waits for calls in flight",
    async () => {
      const image = await client.openImage({ pool: cluster.pool, image: "data" });
      await Promise.all([
        image.metadataSetAsync("nb.config", "a"),
        image.metadataSetAsync("nb.reserve", ""),
        image.metadataSetAsync("nb@s.config", "snap"),
        image.metadataSetAsync("nc", "after the prefix"),
      ]);
      assert.equal(await image.metadataGetAsync("nb.config"), "a");
      assert.equal(await image.metadataGetAsync("nb.absent"), undefined);
      assert.deepEqual(
        await image.metadataListAsync("nb."),
        new Map([["nb.config", "a"], ["nb.reserve", ""]]),
      );
      assert.equal((await image.metadataListAsync()).get("nc"), "after the prefix");
      assert.equal(await image.metadataRemoveAsync("nb@s.config"), true);
      assert.equal(await image.metadataRemoveAsync("nb@s.config"), false);
      assert.equal(await image.sizeAsync(), 16 * MiB);
      const pending = image.metadataGetAsync("nb.config");
      await image.closeAsync();
      assert.equal(await pending, "a");
      await assert.rejects(image.sizeAsync(), /rbd\/data is closed/);
    },
  );

  await t.step(
    "an image lent through a token (as to the data-path worker) is driven by the borrower; closing the borrowed one leaves it open",
    async () => {
      const image = await client.openImage({ pool: cluster.pool, image: "data" });
      const borrowed = RbdImage.borrow(image.lend());
      assert.equal(borrowed.borrowed, true);
      assert.equal(borrowed.label, "rbd/data");
      const io = new Io(borrowed, 4);
      const buffer = Memory.allocate(4096);
      try {
        pattern(buffer.bytes, 5);
        assert.equal(io.one(IOCB_CMD_PWRITEV, 4096, buffer, 4096), 4096);
      } finally {
        io.close();
        borrowed.close();
        buffer.close();
      }
      assert.equal(image.size(), 16 * MiB, "the lender's image is still open");
      image.close();
    },
  );

  await t.step("features, exclusive-lock and stat agree with rbd info", async () => {
    await cluster.createImage("locked", {
      sizeBytes: 8 * MiB,
      features: ["layering", "exclusive-lock"],
      order: 20,
    });
    for (const name of ["data", "locked"]) {
      const info = await cluster.imageInfo(name);
      const image = await client.openImage({ pool: cluster.pool, image: name });
      try {
        assert.deepEqual(image.featureNames(), info.features);
        assert.equal(image.exclusiveLock, info.features.includes("exclusive-lock"));
        assert.deepEqual(image.stat(), {
          size: info.size,
          objectSize: 2 ** info.order,
          objects: info.objects,
          order: info.order,
        });
      } finally {
        image.close();
      }
    }
    const image = await client.openImage({ pool: cluster.pool, image: "locked" });
    assert.equal(image.features(), RBD_FEATURE_LAYERING | RBD_FEATURE_EXCLUSIVE_LOCK);
    image.close();
    await cluster.removeImage("locked");
  });

  await t.step("a resize by another client is seen by the next size()", async () => {
    await cluster.createImage("grow", { sizeBytes: 4 * MiB });
    const image = await client.openImage({ pool: cluster.pool, image: "grow" });
    try {
      assert.equal(image.size(), 4 * MiB);
      await cluster.resizeImage("grow", 12 * MiB);
      assert.equal(image.size(), 12 * MiB);
      await cluster.resizeImage("grow", 2 * MiB, true);
      assert.equal(image.size(), 2 * MiB);
      assert.equal(image.stat().size, 2 * MiB);
    } finally {
      image.close();
    }
    await cluster.removeImage("grow");
  });

  await t.step(
    "a snapshot opens read-only: its bytes stay, writes complete with -EROFS",
    async () => {
      await cluster.createImage("snappy", { sizeBytes: 4 * MiB });
      const head = await client.openImage({ pool: cluster.pool, image: "snappy" });
      const headIo = new Io(head, 4);
      const before = Memory.allocate(65536);
      const after = Memory.allocate(65536);
      const read = Memory.allocate(65536);
      try {
        pattern(before.bytes, 11);
        pattern(after.bytes, 12);
        assert.equal(headIo.one(IOCB_CMD_PWRITEV, 0, before, 65536), 65536);
        await cluster.createSnapshot("snappy", "s1");
        assert.equal(headIo.one(IOCB_CMD_PWRITEV, 0, after, 65536), 65536);

        const snap = await client.openImage(parseImageSpec(`${cluster.pool}/snappy@s1`));
        assert.equal(snap.readOnly, true);
        assert.equal(snap.label, "rbd/snappy@s1");
        const snapIo = new Io(snap, 4);
        try {
          assert.equal(snapIo.one(IOCB_CMD_PREADV, 0, read, 65536), 65536);
          assertSameBytes(read.bytes, before.bytes, "the snapshot keeps its bytes");
          assert.equal(snapIo.one(IOCB_CMD_PWRITEV, 0, after, 4096), -30, "EROFS");
          assert.throws(() => snap.metadataSet("k", "v"), /EROFS .*read-only/);
        } finally {
          snapIo.close();
          snap.close();
        }
        assert.equal(headIo.one(IOCB_CMD_PREADV, 0, read, 65536), 65536);
        assertSameBytes(read.bytes, after.bytes, "the head has the new bytes");
      } finally {
        headIo.close();
        head.close();
        for (const m of [before, after, read]) m.close();
      }
      await cluster.removeImage("snappy");
    },
  );

  await t.step(
    "two images can share one eventfd; closing waits for requests in flight",
    async () => {
      await cluster.createImage("second", { sizeBytes: 4 * MiB });
      const a = await client.openImage({ pool: cluster.pool, image: "data" });
      const b = await client.openImage({ pool: cluster.pool, image: "second" });
      const efd = EventFd.open();
      const epoll = Epoll.open();
      epoll.add(efd.fd, EPOLLIN, 1);
      const buffer = Memory.allocate(MiB);
      const aioA = a.openAio(4, efd);
      const aioB = b.openAio(4, efd);
      try {
        for (const aio of [aioA, aioB]) {
          for (let s = 0; s < 4; s++) {
            aio.prepareVector(s, IOCB_CMD_PREADV, s * 65536, 1);
            aio.setIovec(s, 0, buffer, s * 65536, 65536);
          }
          assert.equal(aio.submit(new Int32Array([0, 1, 2, 3]), 4), 4);
        }
        let fromA = 0;
        let fromB = 0;
        const deadline = performance.now() + 10_000;
        while (fromA + fromB < 8 && performance.now() < deadline) {
          if (epoll.wait(200) === 0) continue;
          efd.drain();
          fromA += aioA.reap();
          fromB += aioB.reap();
        }
        assert.deepEqual([fromA, fromB], [4, 4]);

        // Requests still in flight when the image closes are waited for and released.
        aioB.prepareVector(0, IOCB_CMD_PREADV, 0, 1);
        aioB.setIovec(0, 0, buffer, 0, MiB);
        aioB.submit(new Int32Array([0]), 1);
        assert.equal(aioB.inFlight, 1);
        b.close();
        assert.equal(aioB.inFlight, 0);
        assert.throws(() => aioB.submit(new Int32Array([0]), 1), /closed/);
        assert.throws(() => b.size(), /rbd\/second is closed/);
      } finally {
        a.close();
        b.close();
        buffer.close();
        epoll.close();
        efd.close();
      }
      await cluster.removeImage("second");
    },
  );

  await t.step(
    "a second client reads a completed write at once with the defaults; with rbd_cache=true a write completes before any OSD has it",
    async () => {
      const BYTES = 65536;
      const out = Memory.allocate(BYTES);
      const back = Memory.allocate(BYTES);
      const connect = (options: Record<string, string>) =>
        RadosCluster.connect({ conf: cluster.conf, options });
      const writer = await connect({});
      const reader = await connect({});
      const cachedWriter = await connect({ rbd_cache: "true" });
      const w = new Io(await writer.openImage({ pool: cluster.pool, image: "data" }), 2);
      const r = new Io(await reader.openImage({ pool: cluster.pool, image: "data" }), 2);
      const cw = new Io(await cachedWriter.openImage({ pool: cluster.pool, image: "data" }), 2);
      try {
        // Defaults: every completed write is what the other client reads next.
        let stale = 0;
        for (let k = 1; k <= 200; k++) {
          const offset = (k % 128) * BYTES;
          pattern(out.bytes, k);
          assert.equal(w.one(IOCB_CMD_PWRITEV, offset, out, BYTES), BYTES);
          assert.equal(r.one(IOCB_CMD_PREADV, offset, back, BYTES), BYTES);
          if (firstDifference(back.bytes, out.bytes) !== -1) stale++;
        }
        assert.equal(stale, 0, `${stale} of 200 reads by the second client were stale`);

        // Why: with the OSD frozen, a default write does not complete; with rbd_cache=true
        // (writethrough only until the first flush, then writearound) it completes at once,
        // before any OSD has the bytes, so another client reading now gets the old ones.
        assert.equal(cw.flush(), 0);
        pattern(out.bytes, 1000);
        await cluster.pauseOsd();
        try {
          w.aio.prepareVector(0, IOCB_CMD_PWRITEV, 0, 1);
          w.aio.setIovec(0, 0, out, 0, BYTES);
          cw.aio.prepareVector(0, IOCB_CMD_PWRITEV, BYTES, 1);
          cw.aio.setIovec(0, 0, out, 0, BYTES);
          w.aio.submit(new Int32Array([0]), 1);
          cw.aio.submit(new Int32Array([0]), 1);
          assert.deepEqual(cw.collect(1, 2000), [BYTES], "the cached write completed");
          assert.equal(w.pending(1000), 0, "the default write waits for the OSD");
        } finally {
          cluster.resumeOsd();
        }
        assert.deepEqual(w.collect(1), [BYTES]);
        assert.equal(cw.flush(), 0);
        assert.equal(r.one(IOCB_CMD_PREADV, BYTES, back, BYTES), BYTES);
        assertSameBytes(back.bytes, out.bytes, "after the flush the other client sees it");
      } finally {
        for (const io of [w, r, cw]) io.close();
        for (const c of [writer, reader, cachedWriter]) c.close();
        out.close();
        back.close();
      }
    },
  );

  await t.step(
    "an OSD that stops answering: completions arrive with -ETIMEDOUT after rados_osd_op_timeout",
    async () => {
      const image = await client.openImage({ pool: cluster.pool, image: "data" });
      const io = new Io(image, 4);
      const buffer = Memory.allocate(65536);
      try {
        await cluster.pauseOsd();
        const started = performance.now();
        io.aio.prepareVector(0, IOCB_CMD_PREADV, 0, 1);
        io.aio.setIovec(0, 0, buffer, 0, 4096);
        io.aio.prepareVector(1, IOCB_CMD_PWRITEV, 65536, 1);
        io.aio.setIovec(1, 0, buffer, 0, 4096);
        io.slots.set([0, 1]);
        assert.equal(io.aio.submit(io.slots, 2), 2);
        // The caller is not blocked meanwhile: submit returned long before the 5 s timeout.
        assert.ok(performance.now() - started < 2500);
        const results = io.collect(2, 15_000);
        const elapsed = performance.now() - started;
        assert.deepEqual(results, [-ETIMEDOUT, -ETIMEDOUT]);
        // Without rados_osd_op_timeout they would wait for the OSD for ever.
        assert.ok(elapsed >= 4500 && elapsed < 30_000, `timed out after ${elapsed.toFixed(0)} ms`);
        cluster.resumeOsd();
        assert.equal(io.one(IOCB_CMD_PREADV, 0, buffer, 4096), 4096, "I/O works again");
      } finally {
        cluster.resumeOsd();
        io.close();
        image.close();
        buffer.close();
      }
    },
  );

  await t.step(
    "watchUpdates: another client's metadata change calls back at once; a quiet set does not; " +
      "both are read back",
    async () => {
      const other = await RadosCluster.connect({ conf: cluster.conf, user: cluster.user });
      const watched = await client.openImage({ pool: cluster.pool, image: "data" });
      const writer = await other.openImage({ pool: cluster.pool, image: "data" });
      let calls = 0;
      try {
        watched.watchUpdates(() => calls++);
        const started = performance.now();
        await writer.metadataSetAsync("watch.loud", "1");
        while (calls === 0) {
          assert.ok(performance.now() - started < 5_000, "no update callback within 5 s");
          await new Promise((r) => setTimeout(r, 5));
        }
        const ms = performance.now() - started;
        console.log(`  update callback ${ms.toFixed(1)} ms after the set was sent`);
        const before = calls;
        await writer.metadataSetQuietAsync("watch.quiet", "héllo");
        await writer.metadataSetQuietAsync("watch.empty", "");
        await new Promise((r) => setTimeout(r, 500)); // a notification would have come by now
        assert.equal(calls, before, "a quiet set notified the watchers");
        assert.equal(await watched.metadataGetAsync("watch.quiet"), "héllo");
        assert.equal(await watched.metadataGetAsync("watch.empty"), "");
        const spec = `${cluster.pool}/data`;
        assert.equal(
          (await cluster.rbd(["image-meta", "get", spec, "watch.quiet"])).trim(),
          "héllo",
        );
        assert.match(writer.id(), /^[0-9a-f]+$/);
        await watched.unwatchUpdates();
        await writer.metadataSetAsync("watch.loud", "2");
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(calls, before, "called back after unwatchUpdates");
      } finally {
        await watched.closeAsync();
        await writer.closeAsync();
        await other.closeAsync();
      }
    },
  );

  await t.step("an image opened read-only refuses writes in librbd itself (EROFS)", async () => {
    const image = await client.openImage({ pool: cluster.pool, image: "data", readOnly: true });
    const io = new Io(image, 2);
    const buffer = Memory.allocate(4096);
    try {
      assert.equal(image.readOnly, true);
      assert.equal(io.one(IOCB_CMD_PWRITEV, 0, buffer, 4096), -30 /* EROFS */);
      assert.equal(io.one(IOCB_CMD_PREADV, 0, buffer, 4096), 4096);
      await assert.rejects(image.metadataSetAsync("ro.key", "x"), /EROFS/);
      await assert.rejects(image.metadataSetQuietAsync("ro.key", "x"), /read-write open/);
    } finally {
      io.close();
      image.close();
      buffer.close();
    }
  });

  await t.step(
    "blocklistAsync fences another client: every operation of it then fails with " +
      "EBLOCKLISTED, opening images included; a new connection has a new address and works",
    async () => {
      const victim = await RadosCluster.connect({ conf: cluster.conf, user: cluster.user });
      const image = await victim.openImage({ pool: cluster.pool, image: "data" });
      const io = new Io(image, 2);
      const buffer = Memory.allocate(4096);
      try {
        const address = victim.addresses();
        assert.match(address, /^127\.0\.0\.1:\d+\/\d+$/);
        assert.notEqual(address, client.addresses());
        assert.ok(victim.instanceId() > 0);
        assert.equal(io.one(IOCB_CMD_PWRITEV, 0, buffer, 4096), 4096);
        const started = performance.now();
        await client.blocklistAsync(address);
        console.log(`  blocklisted in ${(performance.now() - started).toFixed(0)} ms`);
        assert.ok((await cluster.ceph(["osd", "blocklist", "ls"])).includes(address));
        assert.equal(io.one(IOCB_CMD_PWRITEV, 0, buffer, 4096), -EBLOCKLISTED);
        await assert.rejects(image.metadataListAsync(), /E108|ESHUTDOWN/);
        await assert.rejects(
          victim.openImage({ pool: cluster.pool, image: "data" }),
          (e: unknown) => e instanceof SysError && e.errno === EBLOCKLISTED,
        );
        const fresh = await RadosCluster.connect({ conf: cluster.conf, user: cluster.user });
        try {
          assert.notEqual(fresh.addresses(), address);
          const again = await fresh.openImage({ pool: cluster.pool, image: "data" });
          const io2 = new Io(again, 2);
          assert.equal(io2.one(IOCB_CMD_PWRITEV, 0, buffer, 4096), 4096);
          io2.close();
          await again.closeAsync();
        } finally {
          await fresh.closeAsync();
        }
        await assert.rejects(client.blocklistAsync("not an address"), /EINVAL/);
      } finally {
        io.close();
        buffer.close();
        await image.closeAsync().catch(() => {});
        await victim.closeAsync().catch(() => {});
      }
    },
  );
}

Deno.test("the test cluster can run inside a network namespace, reachable at 127.0.0.1 only there", async () => {
  await withNetLab(async (lab) => {
    const ns = await lab.namespace();
    await withCephCluster({ netns: ns }, async (cluster) => {
      assert.equal(cluster.netns, ns);
      await cluster.createImage("inside", { sizeBytes: 4 * MiB, features: ["layering"] });
      assert.deepEqual(await cluster.listImages(), ["inside"]);
      const monPid = cluster.pid("mon.a")!;
      const nsOf = (pid: number | "self") => Deno.readLinkSync(`/proc/${pid}/ns/net`);
      assert.notEqual(nsOf(monPid), nsOf("self"), "the monitor runs in the namespace");
      assert.equal(Deno.readLinkSync(`/proc/${monPid}/exe`), "/usr/bin/ceph-mon");
      // From this process (the host's namespace) there is no monitor at that address.
      await assert.rejects(
        RadosCluster.connect({ conf: cluster.conf, options: { client_mount_timeout: "1" } }),
        /ETIMEDOUT/,
      );
    });
  });
});
