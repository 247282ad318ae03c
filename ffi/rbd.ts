/**
 * Ceph RBD images through librbd (`librbd.so.1`) and librados (`librados.so.2`), Debian's
 * `librbd1` package. Both libraries are opened lazily, once per module instance (per thread);
 * when they are missing the error says what to install.
 *
 * ```ts
 * const cluster = await RadosCluster.connect({ conf: "/etc/ceph/ceph.conf", user: "admin" });
 * const image = await cluster.openImage(parseImageSpec("rbd/disk0"));
 * const aio = image.openAio(64, eventFd); // completions signal eventFd
 * aio.prepareVector(0, IOCB_CMD_PREADV, 0, 1);
 * aio.setIovec(0, 0, memory, 0, 4096);
 * aio.submit(slots, 1);
 * // ... eventFd readable: eventFd.drain(); n = aio.reap(); aio.eventSlot(i), aio.eventResult(i)
 * ```
 *
 * **Asynchronous I/O without callbacks.** Deno cannot run a JavaScript callback while the
 * data-path worker sits in epoll_wait, so completions are not callbacks: the image is told to
 * signal an eventfd (`rbd_set_image_notification(image, fd, EVENT_TYPE_EVENTFD)`), every
 * request gets a completion without callback (`rbd_aio_create_completion(slot, NULL, &c)`),
 * and once the eventfd is readable `rbd_poll_io_events` hands back the finished completions,
 * whose argument is the slot. {@link RbdAioContext} is shaped like the kernel AIO
 * {@link AioContext} (numbered slots, `prepareVector`/`setIovec`/`prepareSync`, `submit`,
 * `reap`, `eventSlot`/`eventResult`) so the data path drives either the same way.
 *
 * **What blocks the calling thread.** `connectSync` (up to `client_mount_timeout`) and
 * `openImageSync` (monitor and OSD round trips, up to the op timeouts); `connect` and
 * `openImage` run those calls on a helper thread and return promises. Also blocking, for
 * the main thread or rare control paths: the metadata calls (one OSD round trip each),
 * `size`/`features`/`stat` when another client changed the image header since the last call
 * (librbd refreshes it first: a round trip), `RbdImage.close` (flushes and unwatches),
 * `RbdAioContext.close` (waits for requests in flight) and `RadosCluster.close`. The I/O path
 * (`submit`, `reap`) never waits: librbd queues requests to its own threads
 * (`rbd_non_blocking_aio`, on by default).
 *
 * **Safe defaults for several hosts serving one image**, set before the pass-through options
 * (which may override them): `rbd_cache=false` (librbd's writearound cache lets a second client
 * read stale data right after a completed write), `rados_osd_op_timeout=5` and
 * `rados_mon_op_timeout=5` (without them an OSD that is gone hangs I/O forever; with them the
 * completion arrives with -ETIMEDOUT), `client_mount_timeout=5` (bounds connecting to an
 * unreachable cluster).
 *
 * @module
 */

import { sysError } from "./errno.ts";
import type { Advice } from "./errno.ts";
import type { EventFd } from "./events.ts";
import { assertSupportedPlatform, cString } from "./libc.ts";
import { _memoryAddress, _memoryPointerAt, Memory } from "./memory.ts";
import { IOCB_CMD_PREADV, IOCB_CMD_PWRITEV } from "./constants.ts";
import { IOVEC } from "./structs.ts";

/**
 * `EBLOCKLISTED` (librados: ESHUTDOWN): the OSDs refuse this client, blocklisted by another
 * (`osd blocklist add`). Every later operation of the connection fails with it, opening images
 * included: only a new connection (a new client address) serves again.
 */
export const EBLOCKLISTED = 108;
/** `EVENT_TYPE_EVENTFD` (rbd/librbd.h): the notification fd is an eventfd. */
export const EVENT_TYPE_EVENTFD = 2;
/** `RBD_FEATURE_LAYERING` (rbd/features.h). */
export const RBD_FEATURE_LAYERING = 1 << 0;
/** `RBD_FEATURE_STRIPINGV2`. */
export const RBD_FEATURE_STRIPINGV2 = 1 << 1;
/** `RBD_FEATURE_EXCLUSIVE_LOCK`: writers on several hosts pass a lock back and forth. */
export const RBD_FEATURE_EXCLUSIVE_LOCK = 1 << 2;
/** `RBD_FEATURE_OBJECT_MAP` (needs exclusive-lock). */
export const RBD_FEATURE_OBJECT_MAP = 1 << 3;
/** `RBD_FEATURE_FAST_DIFF` (needs object-map). */
export const RBD_FEATURE_FAST_DIFF = 1 << 4;
/** `RBD_FEATURE_DEEP_FLATTEN`. */
export const RBD_FEATURE_DEEP_FLATTEN = 1 << 5;
/** `RBD_FEATURE_JOURNALING` (needs exclusive-lock). */
export const RBD_FEATURE_JOURNALING = 1 << 6;
/** `RBD_FEATURE_DATA_POOL`. */
export const RBD_FEATURE_DATA_POOL = 1 << 7;

/** Feature bits by the names `rbd create --image-feature` and `rbd info` use. */
export const RBD_FEATURE_NAMES: Readonly<Record<string, number>> = {
  "layering": RBD_FEATURE_LAYERING,
  "striping": RBD_FEATURE_STRIPINGV2,
  "exclusive-lock": RBD_FEATURE_EXCLUSIVE_LOCK,
  "object-map": RBD_FEATURE_OBJECT_MAP,
  "fast-diff": RBD_FEATURE_FAST_DIFF,
  "deep-flatten": RBD_FEATURE_DEEP_FLATTEN,
  "journaling": RBD_FEATURE_JOURNALING,
  "data-pool": RBD_FEATURE_DATA_POOL,
  "operations": 1 << 8,
  "migrating": 1 << 9,
  "non-primary": 1 << 10,
  "dirty-cache": 1 << 11,
};

/**
 * rbd_image_info_t (160 bytes), rbd/librbd.h; checked against the header by
 * tests/ffi/rbd_test.ts.
 * ```
 *   0 u64  size
 *   8 u64  obj_size
 *  16 u64  num_objs
 *  24 i32  order
 *  28 char block_name_prefix[24]   (deprecated)
 *  56 i64  parent_pool             (deprecated)
 *  64 char parent_name[96]         (deprecated)
 * ```
 */
export const RBD_IMAGE_INFO = {
  size: 160,
  imageSize: 0,
  objSize: 8,
  numObjs: 16,
  order: 24,
} as const;

/**
 * rbd_image_spec_t (16 bytes), rbd/librbd.h, as rbd_list2 fills it (strings librbd allocates,
 * freed by rbd_image_spec_list_cleanup); checked against the header by tests/ffi/rbd_test.ts.
 * ```
 *   0 char *id
 *   8 char *name
 * ```
 */
export const RBD_IMAGE_SPEC = { size: 16, id: 0, name: 8 } as const;

/** `RBD_IMAGE_OPTION_CLONE_FORMAT` (rbd/librbd.h): 1 or 2, see {@link CloneOptions}. */
export const RBD_IMAGE_OPTION_CLONE_FORMAT = 12;

/** Most iovecs one slot can carry (as {@link AIO_MAX_IOVECS} for kernel AIO). */
export const RBD_MAX_IOVECS = 32;

/** Set before connecting, unless the pass-through options name them (see the module doc). */
export const RADOS_DEFAULT_OPTIONS: Readonly<Record<string, string>> = {
  rbd_cache: "false",
  rados_osd_op_timeout: "5",
  rados_mon_op_timeout: "5",
  client_mount_timeout: "5",
};

const RADOS_SYMBOLS = {
  /** int rados_create2(rados_t *pcluster, const char *clustername, const char *name,
   *                    uint64_t flags) */
  rados_create2: {
    parameters: [
      "buffer", // rados_t *pcluster
      "buffer", // const char *const clustername
      "buffer", // const char *const name ("client.admin")
      "u64", // uint64_t flags
    ],
    result: "i32",
  },
  /** int rados_conf_read_file(rados_t cluster, const char *path) */
  rados_conf_read_file: {
    parameters: ["pointer", /* rados_t cluster */ "buffer" /* const char *path */],
    result: "i32",
  },
  /** int rados_conf_set(rados_t cluster, const char *option, const char *value) */
  rados_conf_set: {
    parameters: [
      "pointer", // rados_t cluster
      "buffer", // const char *option
      "buffer", // const char *value
    ],
    result: "i32",
  },
  /** int rados_conf_get(rados_t cluster, const char *option, char *buf, size_t len) */
  rados_conf_get: {
    parameters: [
      "pointer", // rados_t cluster
      "buffer", // const char *option
      "buffer", // char *buf
      "usize", // size_t len
    ],
    result: "i32",
  },
  /** int rados_connect(rados_t cluster) — blocks up to client_mount_timeout. */
  rados_connect: { parameters: ["pointer" /* rados_t cluster */], result: "i32" },
  /** rados_connect on a helper thread: a promise, the calling thread keeps running. */
  rados_connect_nonblocking: {
    name: "rados_connect",
    parameters: ["pointer" /* rados_t cluster */],
    result: "i32",
    nonblocking: true,
  },
  /** void rados_shutdown(rados_t cluster) */
  rados_shutdown: { parameters: ["pointer" /* rados_t cluster */], result: "void" },
  /** rados_shutdown on a helper thread (it waits for the cluster's threads to stop). */
  rados_shutdown_nonblocking: {
    name: "rados_shutdown",
    parameters: ["pointer" /* rados_t cluster */],
    result: "void",
    nonblocking: true,
  },
  /** int rados_cluster_fsid(rados_t cluster, char *buf, size_t len) */
  rados_cluster_fsid: {
    parameters: ["pointer", /* rados_t cluster */ "buffer", /* char *buf */ "usize" /* len */],
    result: "i32",
  },
  /** int rados_ioctx_create(rados_t cluster, const char *pool_name, rados_ioctx_t *ioctx) */
  rados_ioctx_create: {
    parameters: [
      "pointer", // rados_t cluster
      "buffer", // const char *pool_name
      "buffer", // rados_ioctx_t *ioctx
    ],
    result: "i32",
  },
  /** void rados_ioctx_destroy(rados_ioctx_t io) */
  rados_ioctx_destroy: { parameters: ["pointer" /* rados_ioctx_t io */], result: "void" },
  /** int rados_getaddrs(rados_t cluster, char **addrs) — a strdup'ed string, local */
  rados_getaddrs: {
    parameters: ["pointer", /* rados_t cluster */ "buffer" /* char **addrs */],
    result: "i32",
  },
  /** void rados_buffer_free(char *buf) */
  rados_buffer_free: { parameters: ["pointer" /* char *buf */], result: "void" },
  /** uint64_t rados_get_instance_id(rados_t cluster) */
  rados_get_instance_id: { parameters: ["pointer" /* rados_t cluster */], result: "u64" },
  /**
   * int rados_blocklist_add(rados_t cluster, char *client_address, uint32_t expire_seconds),
   * on a helper thread: a monitor command, then rados_wait_for_latest_osdmap.
   */
  rados_blocklist_add_nonblocking: {
    name: "rados_blocklist_add",
    parameters: [
      "pointer", // rados_t cluster
      "buffer", // char *client_address
      "u32", // uint32_t expire_seconds (0: mon_osd_blocklist_default_expire)
    ],
    result: "i32",
    nonblocking: true,
  },
  /** rados_write_op_t rados_create_write_op(void) */
  rados_create_write_op: { parameters: [], result: "pointer" },
  /** void rados_release_write_op(rados_write_op_t write_op) */
  rados_release_write_op: { parameters: ["pointer" /* rados_write_op_t */], result: "void" },
  /** void rados_write_op_assert_exists(rados_write_op_t write_op) */
  rados_write_op_assert_exists: { parameters: ["pointer" /* rados_write_op_t */], result: "void" },
  /** void rados_write_op_omap_set(rados_write_op_t write_op, char const* const* keys,
   *                              char const* const* vals, const size_t *lens, size_t num) */
  rados_write_op_omap_set: {
    parameters: [
      "pointer", // rados_write_op_t write_op
      "buffer", // char const* const* keys (NUL-terminated)
      "buffer", // char const* const* vals
      "buffer", // const size_t *lens (of the values)
      "usize", // size_t num
    ],
    result: "void",
  },
  /** int rados_write_op_operate(rados_write_op_t write_op, rados_ioctx_t io, const char *oid,
   *                             time_t *mtime, int flags), on a helper thread */
  rados_write_op_operate_nonblocking: {
    name: "rados_write_op_operate",
    parameters: [
      "pointer", // rados_write_op_t write_op
      "pointer", // rados_ioctx_t io
      "buffer", // const char *oid
      "pointer", // time_t *mtime (NULL: now)
      "i32", // int flags
    ],
    result: "i32",
    nonblocking: true,
  },
  /** int rados_remove(rados_ioctx_t io, const char *oid), on a helper thread. */
  rados_remove_nonblocking: {
    name: "rados_remove",
    parameters: ["pointer", /* rados_ioctx_t io */ "buffer" /* const char *oid */],
    result: "i32",
    nonblocking: true,
  },
  /** int rados_wait_for_latest_osdmap(rados_t cluster), on a helper thread. */
  rados_wait_for_latest_osdmap_nonblocking: {
    name: "rados_wait_for_latest_osdmap",
    parameters: ["pointer" /* rados_t cluster */],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

// rbd_completion_t parameters are declared u64 and passed as BigInt read from a BigUint64Array:
// Deno's fast calls take 64-bit integers as BigInt, while a fresh PointerObject per completion
// costs an allocation and a slow path (measured 26 ns against 104-120 ns per call).
const RBD_SYMBOLS = {
  /** int rbd_open(rados_ioctx_t io, const char *name, rbd_image_t *image,
   *               const char *snap_name) */
  rbd_open: {
    parameters: [
      "pointer", // rados_ioctx_t io
      "buffer", // const char *name
      "buffer", // rbd_image_t *image
      "buffer", // const char *snap_name (NULL: the head)
    ],
    result: "i32",
  },
  /** rbd_open on a helper thread. */
  rbd_open_nonblocking: {
    name: "rbd_open",
    parameters: ["pointer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_open_read_only(rados_ioctx_t io, const char *name, rbd_image_t *image,
   *                         const char *snap_name) */
  rbd_open_read_only: {
    parameters: ["pointer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  /** rbd_open_read_only on a helper thread. */
  rbd_open_read_only_nonblocking: {
    name: "rbd_open_read_only",
    parameters: ["pointer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_close(rbd_image_t image) */
  rbd_close: { parameters: ["pointer" /* rbd_image_t image */], result: "i32" },
  /** rbd_close on a helper thread (it unregisters the header watch: an OSD round trip). */
  rbd_close_nonblocking: {
    name: "rbd_close",
    parameters: ["pointer" /* rbd_image_t image */],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_get_size(rbd_image_t image, uint64_t *size) */
  rbd_get_size: {
    parameters: ["pointer", /* rbd_image_t image */ "buffer" /* uint64_t *size */],
    result: "i32",
  },
  /** rbd_get_size on a helper thread (it refreshes the header first after a resize). */
  rbd_get_size_nonblocking: {
    name: "rbd_get_size",
    parameters: ["pointer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_get_id(rbd_image_t image, char *id, size_t id_len) */
  rbd_get_id: {
    parameters: ["pointer", /* rbd_image_t image */ "buffer", /* char *id */ "usize" /* len */],
    result: "i32",
  },
  /** int rbd_get_features(rbd_image_t image, uint64_t *features) */
  rbd_get_features: {
    parameters: ["pointer", /* rbd_image_t image */ "buffer" /* uint64_t *features */],
    result: "i32",
  },
  /** int rbd_stat(rbd_image_t image, rbd_image_info_t *info, size_t infosize) */
  rbd_stat: {
    parameters: [
      "pointer", // rbd_image_t image
      "buffer", // rbd_image_info_t *info
      "usize", // size_t infosize
    ],
    result: "i32",
  },
  /** int rbd_metadata_get(rbd_image_t image, const char *key, char *value, size_t *val_len) */
  rbd_metadata_get: {
    parameters: [
      "pointer", // rbd_image_t image
      "buffer", // const char *key
      "buffer", // char *value
      "buffer", // size_t *val_len (in: room; out: needed, with the NUL)
    ],
    result: "i32",
  },
  /** rbd_metadata_get on a helper thread. */
  rbd_metadata_get_nonblocking: {
    name: "rbd_metadata_get",
    parameters: ["pointer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_metadata_set(rbd_image_t image, const char *key, const char *value) */
  rbd_metadata_set: {
    parameters: ["pointer", /* rbd_image_t */ "buffer", /* key */ "buffer" /* value */],
    result: "i32",
  },
  /** rbd_metadata_set on a helper thread. */
  rbd_metadata_set_nonblocking: {
    name: "rbd_metadata_set",
    parameters: ["pointer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_metadata_remove(rbd_image_t image, const char *key) */
  rbd_metadata_remove: {
    parameters: ["pointer", /* rbd_image_t */ "buffer" /* const char *key */],
    result: "i32",
  },
  /** rbd_metadata_remove on a helper thread. */
  rbd_metadata_remove_nonblocking: {
    name: "rbd_metadata_remove",
    parameters: ["pointer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_metadata_list(rbd_image_t image, const char *start, uint64_t max, char *keys,
   *                        size_t *key_len, char *values, size_t *vals_len) */
  rbd_metadata_list: {
    parameters: [
      "pointer", // rbd_image_t image
      "buffer", // const char *start (list the keys after this one; "" from the first)
      "u64", // uint64_t max
      "buffer", // char *keys (NUL-separated)
      "buffer", // size_t *key_len
      "buffer", // char *values (NUL-separated)
      "buffer", // size_t *vals_len
    ],
    result: "i32",
  },
  /** rbd_metadata_list on a helper thread. */
  rbd_metadata_list_nonblocking: {
    name: "rbd_metadata_list",
    parameters: ["pointer", "buffer", "u64", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  /** void rbd_image_options_create(rbd_image_options_t *opts) */
  rbd_image_options_create: {
    parameters: ["buffer" /* rbd_image_options_t *opts */],
    result: "void",
  },
  /** void rbd_image_options_destroy(rbd_image_options_t opts) */
  rbd_image_options_destroy: {
    parameters: ["pointer" /* rbd_image_options_t opts */],
    result: "void",
  },
  /** int rbd_image_options_set_uint64(rbd_image_options_t opts, int optname, uint64_t optval) */
  rbd_image_options_set_uint64: {
    parameters: [
      "pointer", // rbd_image_options_t opts
      "i32", // int optname (RBD_IMAGE_OPTION_*)
      "u64", // uint64_t optval
    ],
    result: "i32",
  },
  /**
   * int rbd_clone3(rados_ioctx_t p_ioctx, const char *p_name, const char *p_snapname,
   *                rados_ioctx_t c_ioctx, const char *c_name, rbd_image_options_t c_opts),
   * on a helper thread (monitor and OSD round trips).
   */
  rbd_clone3_nonblocking: {
    name: "rbd_clone3",
    parameters: [
      "pointer", // rados_ioctx_t p_ioctx
      "buffer", // const char *p_name
      "buffer", // const char *p_snapname
      "pointer", // rados_ioctx_t c_ioctx
      "buffer", // const char *c_name
      "pointer", // rbd_image_options_t c_opts
    ],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_remove(rados_ioctx_t io, const char *name), on a helper thread. */
  rbd_remove_nonblocking: {
    name: "rbd_remove",
    parameters: ["pointer", /* rados_ioctx_t io */ "buffer" /* const char *name */],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_rename(rados_ioctx_t src_io_ctx, const char *srcname, const char *destname), on
   *  a helper thread. */
  rbd_rename_nonblocking: {
    name: "rbd_rename",
    parameters: [
      "pointer", // rados_ioctx_t src_io_ctx
      "buffer", // const char *srcname
      "buffer", // const char *destname
    ],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_list2(rados_ioctx_t io, rbd_image_spec_t *images, size_t *max_images), on a
   *  helper thread. */
  rbd_list2_nonblocking: {
    name: "rbd_list2",
    parameters: [
      "pointer", // rados_ioctx_t io
      "buffer", // rbd_image_spec_t *images
      "buffer", // size_t *max_images (in: room; out: count, or needed with -ERANGE)
    ],
    result: "i32",
    nonblocking: true,
  },
  /** void rbd_image_spec_list_cleanup(rbd_image_spec_t *images, size_t num_images) */
  rbd_image_spec_list_cleanup: {
    parameters: ["buffer", /* rbd_image_spec_t *images */ "usize" /* size_t num_images */],
    result: "void",
  },
  /** int rbd_snap_is_protected(rbd_image_t image, const char *snap_name, int *is_protected),
   *  on a helper thread (it may refresh the header first). */
  rbd_snap_is_protected_nonblocking: {
    name: "rbd_snap_is_protected",
    parameters: [
      "pointer", // rbd_image_t image
      "buffer", // const char *snap_name
      "buffer", // int *is_protected
    ],
    result: "i32",
    nonblocking: true,
  },
  /**
   * int rbd_diff_iterate2(rbd_image_t image, const char *fromsnapname, uint64_t ofs,
   *                       uint64_t len, uint8_t include_parent, uint8_t whole_object,
   *                       int (*cb)(uint64_t, size_t, int, void *), void *arg),
   * on a helper thread; the callback is thread-safe (librbd may call it from its own threads).
   */
  rbd_diff_iterate2_nonblocking: {
    name: "rbd_diff_iterate2",
    parameters: [
      "pointer", // rbd_image_t image
      "buffer", // const char *fromsnapname (NULL: from the beginning)
      "u64", // uint64_t ofs
      "u64", // uint64_t len
      "u8", // uint8_t include_parent
      "u8", // uint8_t whole_object
      "function", // int (*cb)(uint64_t offset, size_t length, int exists, void *arg)
      "pointer", // void *arg (NULL)
    ],
    result: "i32",
    nonblocking: true,
  },
  /** int rbd_set_image_notification(rbd_image_t image, int fd, int type) */
  rbd_set_image_notification: {
    parameters: ["pointer", /* rbd_image_t */ "i32", /* int fd */ "i32" /* int type */],
    result: "i32",
  },
  /** int rbd_aio_create_completion(void *cb_arg, rbd_callback_t complete_cb,
   *                                rbd_completion_t *c); cb_arg is the slot number */
  rbd_aio_create_completion: {
    parameters: [
      "u64", // void *cb_arg (the slot)
      "pointer", // rbd_callback_t complete_cb (NULL)
      "pointer", // rbd_completion_t *c (the slot's word in the completion table)
    ],
    result: "i32",
  },
  /** int rbd_aio_readv(rbd_image_t image, const struct iovec *iov, int iovcnt, uint64_t off,
   *                    rbd_completion_t c) */
  rbd_aio_readv: {
    parameters: [
      "pointer", // rbd_image_t image
      "pointer", // const struct iovec *iov
      "i32", // int iovcnt
      "u64", // uint64_t off
      "u64", // rbd_completion_t c
    ],
    result: "i32",
  },
  /** int rbd_aio_writev(rbd_image_t image, const struct iovec *iov, int iovcnt, uint64_t off,
   *                     rbd_completion_t c) */
  rbd_aio_writev: {
    parameters: ["pointer", "pointer", "i32", "u64", "u64"],
    result: "i32",
  },
  /** int rbd_aio_flush(rbd_image_t image, rbd_completion_t c) */
  rbd_aio_flush: {
    parameters: ["pointer", /* rbd_image_t image */ "u64" /* rbd_completion_t c */],
    result: "i32",
  },
  /** int rbd_poll_io_events(rbd_image_t image, rbd_completion_t *comps, int numcomp) */
  rbd_poll_io_events: {
    parameters: [
      "pointer", // rbd_image_t image
      "pointer", // rbd_completion_t *comps
      "i32", // int numcomp
    ],
    result: "i32",
  },
  /** void *rbd_aio_get_arg(rbd_completion_t c); the slot fits the low 32 bits of rax */
  rbd_aio_get_arg: { parameters: ["u64" /* rbd_completion_t c */], result: "i32" },
  /** ssize_t rbd_aio_get_return_value(rbd_completion_t c) */
  rbd_aio_get_return_value: { parameters: ["u64" /* rbd_completion_t c */], result: "isize" },
  /** int rbd_aio_wait_for_complete(rbd_completion_t c) — blocks; used by close only. */
  rbd_aio_wait_for_complete: { parameters: ["u64" /* rbd_completion_t c */], result: "i32" },
  /** void rbd_aio_release(rbd_completion_t c) */
  rbd_aio_release: { parameters: ["u64" /* rbd_completion_t c */], result: "void" },
  /** int rbd_update_watch(rbd_image_t image, uint64_t *handle, rbd_update_callback_t watch_cb,
   *                       void *arg) */
  rbd_update_watch: {
    parameters: [
      "pointer", // rbd_image_t image
      "buffer", // uint64_t *handle
      "function", // rbd_update_callback_t watch_cb: void (*)(void *arg)
      "pointer", // void *arg (NULL)
    ],
    result: "i32",
  },
  /**
   * int rbd_update_unwatch(rbd_image_t image, uint64_t handle), on a helper thread: it waits
   * for a callback under way, which runs on the calling JavaScript thread.
   */
  rbd_update_unwatch_nonblocking: {
    name: "rbd_update_unwatch",
    parameters: ["pointer", /* rbd_image_t image */ "u64" /* uint64_t handle */],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

type Rados = Deno.DynamicLibrary<typeof RADOS_SYMBOLS>["symbols"];
type Rbd = Deno.DynamicLibrary<typeof RBD_SYMBOLS>["symbols"];

const DEFAULT_LIBRARIES = { rados: "librados.so.2", rbd: "librbd.so.1" };
let libraryNames = { ...DEFAULT_LIBRARIES };
const opened = new Map<string, Rados | Rbd>();

const INSTALL_ADVICE = "install Debian's librbd1 (apt-get install librbd1; it brings librados2), " +
  "or your distribution's librbd package, to serve Ceph RBD images";

function openLibrary<S extends Deno.ForeignLibraryInterface>(name: string, symbols: S) {
  assertSupportedPlatform();
  const known = opened.get(name);
  if (known) return known as unknown as Deno.DynamicLibrary<S>["symbols"];
  let lib: Deno.DynamicLibrary<S>;
  try {
    lib = Deno.dlopen(name, symbols);
  } catch (cause) {
    throw new Error(
      `${name} could not be opened (${
        (cause as Error).message.split("\n")[0]
      }) — ${INSTALL_ADVICE}`,
      { cause },
    );
  }
  opened.set(name, lib.symbols as unknown as Rados | Rbd);
  return lib.symbols;
}

function rados(): Rados {
  return openLibrary(libraryNames.rados, RADOS_SYMBOLS);
}

function rbd(): Rbd {
  return openLibrary(libraryNames.rbd, RBD_SYMBOLS);
}

/**
 * @internal Test seam: the library names to open (`null` restores librados.so.2 and
 * librbd.so.1). Libraries already opened stay cached under their names.
 */
export function _setCephLibraryNames(names: { rados?: string; rbd?: string } | null): void {
  libraryNames = names === null ? { ...DEFAULT_LIBRARIES } : { ...DEFAULT_LIBRARIES, ...names };
}

/** Opens librados and librbd now (they are otherwise opened on first use); throws with advice. */
export function loadCephLibraries(): void {
  rados();
  rbd();
}

/** An 8-byte out parameter and the BigInt in it. */
class Out64 {
  readonly bytes = new Uint8Array(new ArrayBuffer(8));
  readonly #big = new BigUint64Array(this.bytes.buffer);
  get value(): bigint {
    return this.#big[0];
  }
  set value(v: bigint) {
    this.#big[0] = v;
  }
  /** The pointer stored in it (null when 0). */
  pointer(): Deno.PointerObject | null {
    return Deno.UnsafePointer.create(this.#big[0]);
  }
}

function check(r: number, call: string, advice?: Advice): void {
  if (r < 0) throw sysError(call, -r, advice);
}

/** What {@link RadosCluster.connect} needs. */
export interface RadosOptions {
  /** The cluster's ceph.conf (default `/etc/ceph/ceph.conf`). */
  conf?: string;
  /** The Ceph user without `client.` (default `admin`); a name with a dot is taken whole. */
  user?: string;
  /**
   * librados/librbd options set with rados_conf_set after the conf file and after
   * {@link RADOS_DEFAULT_OPTIONS}, e.g. `{ keyring: "/etc/ceph/x.keyring",
   * rados_osd_op_timeout: "10" }`.
   */
  options?: Record<string, string>;
}

/** Which image to open: `POOL/IMAGE`, or `POOL/IMAGE@SNAP` (read-only). */
export interface ImageSpec {
  pool: string;
  image: string;
  /** A snapshot: opened read-only. */
  snapshot?: string;
  /** Open the head read-only (no header watch: a later resize by others is not seen). */
  readOnly?: boolean;
}

/**
 * Parses qemu's spelling without the `rbd:` prefix: `POOL/IMAGE` or `POOL/IMAGE@SNAP`.
 * Throws a RangeError that shows the expected form.
 */
export function parseImageSpec(spec: string): ImageSpec {
  const m = /^([^/@\s]+)\/([^/@\s]+)(?:@([^/@\s]+))?$/.exec(spec);
  if (!m) {
    throw new RangeError(
      `'${spec}' is not an RBD image: write POOL/IMAGE, or POOL/IMAGE@SNAP for a snapshot`,
    );
  }
  return m[3] === undefined ? { pool: m[1], image: m[2] } : {
    pool: m[1],
    image: m[2],
    snapshot: m[3],
  };
}

/** A connection to a Ceph cluster (a librados handle) and the pools it opened. */
export class RadosCluster {
  /** The conf file read. */
  readonly conf: string;
  /** The full Ceph entity name, e.g. `client.admin`. */
  readonly name: string;
  #handle: Deno.PointerObject | null;
  readonly #ioctxs = new Map<string, Deno.PointerObject>();
  readonly #images = new Set<RbdImage>();

  private constructor(handle: Deno.PointerObject, conf: string, name: string) {
    this.#handle = handle;
    this.conf = conf;
    this.name = name;
  }

  /**
   * Connects without blocking the calling thread (rados_connect runs on a helper thread).
   * Fails within `client_mount_timeout` (5 s by default) when no monitor answers.
   */
  static async connect(options: RadosOptions = {}): Promise<RadosCluster> {
    const cluster = RadosCluster.#configure(options);
    const r = await rados().rados_connect_nonblocking(cluster.#handle);
    cluster.#connected(r);
    return cluster;
  }

  /** As {@link connect}, but blocks the calling thread (up to `client_mount_timeout`). */
  static connectSync(options: RadosOptions = {}): RadosCluster {
    const cluster = RadosCluster.#configure(options);
    cluster.#connected(rados().rados_connect(cluster.#handle));
    return cluster;
  }

  static #configure(options: RadosOptions): RadosCluster {
    const lib = rados();
    rbd(); // fail now, with advice, rather than at the first image
    const conf = options.conf ?? "/etc/ceph/ceph.conf";
    const user = options.user ?? "admin";
    const name = user.includes(".") ? user : `client.${user}`;
    const out = new Out64();
    check(
      lib.rados_create2(out.bytes, cString("ceph"), cString(name), 0n),
      `rados_create2(${name})`,
    );
    const cluster = new RadosCluster(out.pointer()!, conf, name);
    try {
      check(
        lib.rados_conf_read_file(cluster.#handle, cString(conf)),
        `rados_conf_read_file(${conf})`,
        {
          ENOENT: "the file does not exist: set ceph-conf to the cluster's ceph.conf",
          EINVAL: "the file does not parse as a Ceph configuration",
          EACCES: "the file is not readable by this user",
        },
      );
      const settings = { ...RADOS_DEFAULT_OPTIONS, ...options.options };
      for (const [key, value] of Object.entries(settings)) cluster.#set(key, value);
    } catch (error) {
      cluster.close();
      throw error;
    }
    return cluster;
  }

  #set(key: string, value: string): void {
    const r = rados().rados_conf_set(this.#live(), cString(key), cString(value));
    check(r, `rados_conf_set(${key}=${value})`, {
      ENOENT: `'${key}' is not a Ceph option: check ceph-options (names as in 'ceph config help')`,
      EINVAL: `'${value}' is not a valid value for ${key}`,
    });
  }

  #connected(r: number): void {
    if (r >= 0) return;
    const timeout = this.confGet("client_mount_timeout");
    const monHost = this.confGet("mon_host");
    this.close();
    throw sysError(`rados_connect(${this.name}, ${this.conf})`, -r, {
      ETIMEDOUT: `no monitor answered within client_mount_timeout (${timeout} s): check that ` +
        `'mon host' (${monHost || "empty"}) names running monitors reachable from this host`,
      ENOENT: `no key for ${this.name}: check ceph-user and that a keyring for it is named in ` +
        `the conf or in ceph-options (keyring=PATH)`,
      EACCES: `the monitors refused ${this.name}'s key: check ceph-user and its keyring`,
      EPERM: `the monitors refused ${this.name}'s key: check ceph-user and its keyring`,
      EINVAL: `the configuration is incomplete: check 'mon host' in ${this.conf}`,
    });
  }

  #live(): Deno.PointerObject {
    if (this.#handle === null) throw new Error(`RadosCluster(${this.name}) is closed`);
    return this.#handle;
  }

  /** The effective value of a librados option (e.g. `rbd_cache` → `"false"`). */
  confGet(option: string): string {
    const buffer = new Uint8Array(new ArrayBuffer(4096));
    const r = rados().rados_conf_get(this.#live(), cString(option), buffer, BigInt(buffer.length));
    check(r, `rados_conf_get(${option})`);
    const end = buffer.indexOf(0);
    return new TextDecoder().decode(buffer.subarray(0, end < 0 ? buffer.length : end));
  }

  /** @internal The pool's I/O context (RbdImage's direct object operations). */
  _ioctx(pool: string): Deno.PointerObject {
    return this.#ioctx(pool);
  }

  #ioctx(pool: string): Deno.PointerObject {
    const known = this.#ioctxs.get(pool);
    if (known) return known;
    const out = new Out64();
    const r = rados().rados_ioctx_create(this.#live(), cString(pool), out.bytes);
    check(r, `rados_ioctx_create(${pool})`, {
      ENOENT: `pool '${pool}' does not exist (ceph osd pool ls lists the pools)`,
    });
    const ioctx = out.pointer()!;
    this.#ioctxs.set(pool, ioctx);
    return ioctx;
  }

  /** Opens an image (a snapshot read-only) without blocking the calling thread. */
  async openImage(spec: ImageSpec): Promise<RbdImage> {
    const ioctx = this.#ioctx(spec.pool);
    // `args` is used after the await: its buffers stay alive while the helper thread runs.
    const args = openArguments(spec);
    const lib = rbd();
    const r =
      await (args.readOnly
        ? lib.rbd_open_read_only_nonblocking(ioctx, args.name, args.out.bytes, args.snap)
        : lib.rbd_open_nonblocking(ioctx, args.name, args.out.bytes, args.snap));
    return this.#opened(spec, r, args);
  }

  /** As {@link openImage}, but blocks the calling thread (round trips to monitor and OSDs). */
  openImageSync(spec: ImageSpec): RbdImage {
    const ioctx = this.#ioctx(spec.pool);
    const args = openArguments(spec);
    const lib = rbd();
    const r = args.readOnly
      ? lib.rbd_open_read_only(ioctx, args.name, args.out.bytes, args.snap)
      : lib.rbd_open(ioctx, args.name, args.out.bytes, args.snap);
    return this.#opened(spec, r, args);
  }

  #opened(spec: ImageSpec, r: number, args: ReturnType<typeof openArguments>): RbdImage {
    const label = imageLabel(spec);
    check(r, `rbd_open(${label})`, {
      ENOENT: spec.snapshot
        ? `image or snapshot not found (rbd snap ls ${spec.pool}/${spec.image})`
        : `image not found (rbd ls ${spec.pool} lists the images)`,
      EPERM: `${this.name} may not open it: give it 'profile rbd' caps on the pool`,
      EACCES: `${this.name} may not open it: give it 'profile rbd' caps on the pool`,
      ETIMEDOUT: "the OSDs did not answer within rados_osd_op_timeout",
    });
    const image = new RbdImage(this, args.out.pointer()!, spec, args.readOnly);
    this.#images.add(image);
    return image;
  }

  /** @internal Called by RbdImage.close. */
  _forget(image: RbdImage): void {
    this.#images.delete(image);
  }

  /** The cluster's fsid (a UUID), as `ceph fsid` prints it. */
  fsid(): string {
    const buffer = new Uint8Array(new ArrayBuffer(64));
    const r = rados().rados_cluster_fsid(this.#live(), buffer, BigInt(buffer.length));
    check(r, "rados_cluster_fsid");
    return decodeCString(buffer, 0);
  }

  /**
   * This client's addresses as the cluster knows them (rados_getaddrs; no round trip), e.g.
   * `127.0.0.1:0/2718281828`, what {@link blocklistAsync} takes. The nonce after the slash is
   * drawn per connection: a client connected anew has a new address.
   */
  addresses(): string {
    const out = new Out64();
    check(rados().rados_getaddrs(this.#live(), out.bytes), `rados_getaddrs(${this.name})`);
    const p = out.pointer();
    if (p === null) return "";
    try {
      return Deno.UnsafePointerView.getCString(p);
    } finally {
      rados().rados_buffer_free(p);
    }
  }

  /** The client's instance id: N of the `client.N` the cluster names this connection. */
  instanceId(): number {
    return Number(rados().rados_get_instance_id(this.#live()));
  }

  /**
   * Blocklists the client at `address` (one of {@link addresses}' form) for `expireSeconds`
   * (0: the cluster's `mon_osd_blocklist_default_expire`, an hour by default), without
   * blocking the calling thread. librados sends `osd blocklist add` to the monitors and then
   * waits for the OSD map that holds the entry (rados_wait_for_latest_osdmap); this client's
   * later operations carry that map's epoch, and an OSD does not serve an operation before it
   * has the map of the operation's epoch: once this resolves, every operation this client
   * sends is ordered after the blocklist, and the OSDs refuse the blocklisted client's
   * operations with -EBLOCKLISTED (ESHUTDOWN, 108).
   */
  async blocklistAsync(address: string, expireSeconds = 0): Promise<void> {
    const handle = this.#live();
    const text = cString(address);
    const r = await rados().rados_blocklist_add_nonblocking(handle, text, expireSeconds);
    check(r, `rados_blocklist_add(${address})`, {
      EINVAL: "not a client address (rados_getaddrs form: IP:PORT/NONCE)",
      EACCES: `${this.name} may not blocklist: give it 'profile rbd' caps on the monitors`,
      EPERM: `${this.name} may not blocklist: give it 'profile rbd' caps on the monitors`,
    });
    check(
      await rados().rados_wait_for_latest_osdmap_nonblocking(handle),
      `rados_wait_for_latest_osdmap(${this.name})`,
    );
  }

  /**
   * The images of `pool`, name and id (rbd_list2; one round trip), without blocking the
   * calling thread. Images in the trash are not listed.
   */
  async listImagesAsync(pool: string): Promise<RbdImageName[]> {
    const ioctx = this.#ioctx(pool);
    const lib = rbd();
    const count = new Out64();
    let room = 64;
    for (;;) {
      const specs = new Uint8Array(new ArrayBuffer(room * RBD_IMAGE_SPEC.size));
      count.value = BigInt(room);
      const r = await lib.rbd_list2_nonblocking(ioctx, specs, count.bytes);
      if (r === -ERANGE) {
        room = Math.max(Number(count.value), room * 2);
        continue;
      }
      check(r, `rbd_list2(${pool})`, POOL_ADVICE);
      const n = Number(count.value);
      const words = new BigUint64Array(specs.buffer);
      const images: RbdImageName[] = [];
      for (let i = 0; i < n; i++) {
        images.push({
          id: pointedString(words[(i * RBD_IMAGE_SPEC.size + RBD_IMAGE_SPEC.id) / 8]),
          name: pointedString(words[(i * RBD_IMAGE_SPEC.size + RBD_IMAGE_SPEC.name) / 8]),
        });
      }
      lib.rbd_image_spec_list_cleanup(specs, BigInt(n));
      return images;
    }
  }

  /**
   * Clones snapshot `parent` (POOL/IMAGE@SNAP) as image `child` (in `childPool`) without
   * blocking the calling thread (rbd_clone3: monitor and OSD round trips). The clone reads
   * the snapshot's data until it writes its own; its writes never reach the parent. Format 1
   * (the default here) needs the snapshot protected and works with every client.
   */
  async cloneImageAsync(
    parent: ImageSpec,
    childPool: string,
    child: string,
    options: CloneOptions = {},
  ): Promise<void> {
    if (parent.snapshot === undefined) {
      throw new RangeError(`cloneImageAsync: ${imageLabel(parent)} is not a snapshot`);
    }
    const parentIo = this.#ioctx(parent.pool);
    const childIo = this.#ioctx(childPool);
    const lib = rbd();
    const out = new Out64();
    lib.rbd_image_options_create(out.bytes);
    const opts = out.pointer()!;
    const label = `rbd_clone3(${imageLabel(parent)} -> ${childPool}/${child})`;
    const protect = `rbd snap protect ${imageLabel(parent)}`;
    try {
      check(
        lib.rbd_image_options_set_uint64(
          opts,
          RBD_IMAGE_OPTION_CLONE_FORMAT,
          BigInt(options.format ?? 1),
        ),
        `${label}: clone format ${options.format}`,
      );
      const names = [cString(parent.image), cString(parent.snapshot), cString(child)];
      const r = await lib.rbd_clone3_nonblocking(
        parentIo,
        names[0],
        names[1],
        childIo,
        names[2],
        opts,
      );
      check(r, label, {
        EINVAL: `the snapshot is not protected (format 1 clones need it): ${protect}`,
        ENOENT: `no such snapshot (rbd snap ls ${parent.pool}/${parent.image})`,
        EEXIST: `an image ${childPool}/${child} exists already`,
        EPERM: `${this.name} may not create images in pool '${childPool}': give it ` +
          `'profile rbd' caps on it`,
        EACCES: `${this.name} may not create images in pool '${childPool}': give it ` +
          `'profile rbd' caps on it`,
        EROFS: `pool '${childPool}' is read-only`,
        ENOSPC: `the cluster is full (ceph df)`,
        EDQUOT: `pool '${childPool}' is over its quota (ceph osd pool get-quota ${childPool})`,
      });
    } finally {
      lib.rbd_image_options_destroy(opts);
    }
  }

  /**
   * Renames image `from` of `pool` to `to` without blocking the calling thread (rbd_rename).
   * The image's directory entry changes in one step: a reader sees the old name or the new.
   */
  async renameImageAsync(pool: string, from: string, to: string): Promise<void> {
    const ioctx = this.#ioctx(pool);
    const r = await rbd().rbd_rename_nonblocking(ioctx, cString(from), cString(to));
    check(r, `rbd_rename(${pool}/${from} -> ${to})`, {
      EEXIST: `an image ${pool}/${to} exists already`,
      ENOENT: `no image ${pool}/${from} (rbd ls ${pool})`,
    });
  }

  /**
   * Removes image `name` of `pool` and its data without blocking the calling thread
   * (rbd_remove; one round trip per object of the image). False when there is no such image.
   */
  async removeImageAsync(pool: string, name: string): Promise<boolean> {
    const ioctx = this.#ioctx(pool);
    const r = await rbd().rbd_remove_nonblocking(ioctx, cString(name));
    if (r === -ENOENT) return false;
    check(r, `rbd_remove(${pool}/${name})`, {
      EBUSY: `the image is open somewhere (rbd status ${pool}/${name} shows the watchers): ` +
        "close it first",
      ENOTEMPTY: `the image has snapshots (rbd snap purge ${pool}/${name})`,
    });
    return true;
  }

  /**
   * Removes RADOS object `oid` of `pool` (rados_remove), without blocking the calling thread.
   * False when there is no such object.
   */
  async removeObjectAsync(pool: string, oid: string): Promise<boolean> {
    const ioctx = this.#ioctx(pool);
    const r = await rados().rados_remove_nonblocking(ioctx, cString(oid));
    if (r === -ENOENT) return false;
    check(r, `rados_remove(${pool}/${oid})`);
    return true;
  }

  /** Closes the images still open, the pools, and the connection (blocks briefly). Idempotent. */
  close(): void {
    if (this.#handle === null) return;
    for (const image of [...this.#images]) image.close();
    const lib = rados();
    for (const ioctx of this.#ioctxs.values()) lib.rados_ioctx_destroy(ioctx);
    this.#ioctxs.clear();
    lib.rados_shutdown(this.#handle);
    this.#handle = null;
  }

  /**
   * As {@link close}, without blocking the calling thread: the images still open are closed
   * with {@link RbdImage.closeAsync}, then rados_shutdown runs on a helper thread.
   */
  async closeAsync(): Promise<void> {
    if (this.#handle === null) return;
    const handle = this.#handle;
    await Promise.all([...this.#images].map((image) => image.closeAsync()));
    if (this.#handle !== handle) return; // closed meanwhile
    this.#handle = null;
    const lib = rados();
    for (const ioctx of this.#ioctxs.values()) lib.rados_ioctx_destroy(ioctx);
    this.#ioctxs.clear();
    await lib.rados_shutdown_nonblocking(handle);
  }
}

/**
 * An open image lent to another thread (the data-path worker): structured-cloneable, so it
 * travels in a postMessage. The lender keeps the image open until the borrower says it is done
 * with it ({@link RbdImage.lend}, {@link RbdImage.borrow}).
 */
export interface RbdImageToken {
  /** The rbd_image_t, as an address. */
  readonly address: bigint;
  readonly pool: string;
  readonly image: string;
  readonly snapshot: string | undefined;
  readonly readOnly: boolean;
}

function openArguments(spec: ImageSpec) {
  return {
    name: cString(spec.image),
    snap: spec.snapshot === undefined ? null : cString(spec.snapshot),
    out: new Out64(),
    readOnly: spec.snapshot !== undefined || spec.readOnly === true,
  };
}

function imageLabel(spec: ImageSpec): string {
  return `${spec.pool}/${spec.image}${spec.snapshot === undefined ? "" : `@${spec.snapshot}`}`;
}

/** What {@link RbdImage.stat} reports. */
export interface RbdImageStat {
  /** Size in bytes. */
  size: number;
  /** Bytes per RADOS object (2^order). */
  objectSize: number;
  /** Number of objects the image spans. */
  objects: number;
  /** log2 of the object size. */
  order: number;
}

/** An image as {@link RadosCluster.listImagesAsync} lists it. */
export interface RbdImageName {
  /** The image's id (its header object is `rbd_header.ID`). */
  id: string;
  name: string;
}

/** Options of {@link RadosCluster.cloneImageAsync}. */
export interface CloneOptions {
  /**
   * Clone format (default 1): 1 needs the parent snapshot protected (`rbd snap protect`) and
   * every client understands it; 2 needs no protection but clients of Mimic or later
   * (`ceph osd set-require-min-compat-client mimic`).
   */
  format?: 1 | 2;
}

/** An open RBD image (a librbd handle). */
export class RbdImage {
  /** `POOL/IMAGE` or `POOL/IMAGE@SNAP`. */
  readonly label: string;
  /** The pool. */
  readonly pool: string;
  /** The image name. */
  readonly image: string;
  /** The snapshot, if one was opened. */
  readonly snapshot: string | undefined;
  /** Whether writes are refused (a snapshot, or a read-only open): they complete with -EROFS. */
  readonly readOnly: boolean;
  /** Borrowed from another thread ({@link borrow}): closing it leaves the handle open. */
  readonly borrowed: boolean;
  readonly #cluster: RadosCluster | null;
  #handle: Deno.PointerObject | null;
  #aio: RbdAioContext | null = null;
  #watch: { handle: bigint; callback: Deno.UnsafeCallback<typeof UPDATE_CALLBACK> } | null = null;
  #id: string | null = null;
  readonly #out = new Out64();
  /** Calls on helper threads not yet finished: closeAsync waits for them. */
  readonly #calls = new Set<Promise<unknown>>();

  /** @internal Use {@link RadosCluster.openImage} or {@link RbdImage.borrow}. */
  constructor(
    cluster: RadosCluster | null,
    handle: Deno.PointerObject,
    spec: ImageSpec,
    readOnly: boolean,
  ) {
    this.borrowed = cluster === null;
    this.#cluster = cluster;
    this.#handle = handle;
    this.label = imageLabel(spec);
    this.pool = spec.pool;
    this.image = spec.image;
    this.snapshot = spec.snapshot;
    this.readOnly = readOnly;
  }

  #live(): Deno.PointerObject {
    if (this.#handle === null) throw new Error(`RBD image ${this.label} is closed`);
    return this.#handle;
  }

  /** The size in bytes, as librbd knows it now (it re-reads the header after a resize). */
  size(): number {
    check(rbd().rbd_get_size(this.#live(), this.#out.bytes), `rbd_get_size(${this.label})`);
    return Number(this.#out.value);
  }

  /** The feature bits (RBD_FEATURE_*). */
  features(): number {
    check(rbd().rbd_get_features(this.#live(), this.#out.bytes), `rbd_get_features(${this.label})`);
    return Number(this.#out.value);
  }

  /** The feature names, as `rbd info` prints them. */
  featureNames(): string[] {
    const bits = this.features();
    const names: string[] = [];
    for (const [name, bit] of Object.entries(RBD_FEATURE_NAMES)) if (bits & bit) names.push(name);
    return names;
  }

  /**
   * Whether the image has the exclusive-lock feature. Writers on several hosts then pass the
   * lock back and forth (measured on one node: two alternating writers got a tenth of one
   * writer's IOPS), and a holder that died stalls the others' writes ~30 s (until the OSD drops
   * its watch). Serve such images read-write from one host only.
   */
  get exclusiveLock(): boolean {
    return (this.features() & RBD_FEATURE_EXCLUSIVE_LOCK) !== 0;
  }

  /** rbd_stat: size, object size, object count, order. */
  stat(): RbdImageStat {
    const info = new Uint8Array(new ArrayBuffer(RBD_IMAGE_INFO.size));
    const r = rbd().rbd_stat(this.#live(), info, BigInt(RBD_IMAGE_INFO.size));
    check(r, `rbd_stat(${this.label})`);
    const view = new DataView(info.buffer);
    return {
      size: Number(view.getBigUint64(RBD_IMAGE_INFO.imageSize, true)),
      objectSize: Number(view.getBigUint64(RBD_IMAGE_INFO.objSize, true)),
      objects: Number(view.getBigUint64(RBD_IMAGE_INFO.numObjs, true)),
      order: view.getInt32(RBD_IMAGE_INFO.order, true),
    };
  }

  /** The value of metadata `key`, or undefined when it is not set (one OSD round trip). */
  metadataGet(key: string): string | undefined {
    return runBlocking(
      metadataGetCalls(this.label, key),
      (name, value, length) => rbd().rbd_metadata_get(this.#live(), name, value, length),
    );
  }

  /** Sets metadata `key` to `value` (one OSD round trip; read-only images refuse: EROFS). */
  metadataSet(key: string, value: string): void {
    runBlocking(
      metadataSetCalls(this.label, key, value),
      (name, text) => rbd().rbd_metadata_set(this.#live(), name, text),
    );
  }

  /**
   * As {@link metadataSetAsync}, without notifying the image's watchers: a direct write of the
   * key into the header object's omap (`metadata_KEY` on `rbd_header.ID`, where librbd keeps
   * image metadata; `rbd image-meta get` and {@link metadataListAsync} read it as any other).
   * Other clients see it at their next read, not at once; in exchange no write waits for a
   * watcher that does not answer (a stopped client keeps its watch until the OSD times it out,
   * `osd_client_watch_timeout`, 30 s, and librbd waits 5 s for each of them at every
   * notification). Not for a read-only open or a borrowed image.
   */
  async metadataSetQuietAsync(key: string, value: string): Promise<void> {
    if (this.#cluster === null || this.readOnly) {
      throw new Error(`RBD image ${this.label}: metadataSetQuietAsync needs a read-write open`);
    }
    const ioctx = this.#cluster._ioctx(this.pool);
    const oid = cString(`rbd_header.${this.id()}`);
    const name = cString(`metadata_${key}`);
    const text = new TextEncoder().encode(value);
    const keys = new BigUint64Array([
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(name))),
    ]);
    const values = new BigUint64Array([
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(text.length > 0 ? text : name))),
    ]);
    const lengths = new BigUint64Array([BigInt(text.length)]);
    const lib = rados();
    const op = lib.rados_create_write_op();
    try {
      lib.rados_write_op_assert_exists(op);
      lib.rados_write_op_omap_set(op, keys, values, lengths, 1n);
      const r = await this.#track(lib.rados_write_op_operate_nonblocking(op, ioctx, oid, null, 0));
      check(r, `rados_write_op_operate(${this.label} rbd_header, omap set ${key})`);
    } finally {
      lib.rados_release_write_op(op);
      // The buffers the pointers point into stay referenced until the call has returned.
      void [name, text, keys, values, lengths];
    }
  }

  /**
   * Whether snapshot `snapshot` of this image is protected (rbd_snap_is_protected), without
   * blocking the calling thread. A missing snapshot is an error (ENOENT) that says so.
   */
  async snapshotProtectedAsync(snapshot: string): Promise<boolean> {
    const out = new Uint8Array(new ArrayBuffer(4));
    const name = cString(snapshot);
    const r = await this.#track(
      rbd().rbd_snap_is_protected_nonblocking(this.#live(), name, out),
    );
    check(r, `rbd_snap_is_protected(${this.pool}/${this.image}@${snapshot})`, {
      ENOENT: `no snapshot '${snapshot}' (rbd snap ls ${this.pool}/${this.image}; ` +
        `rbd snap create ${this.pool}/${this.image}@${snapshot} makes it)`,
    });
    return new Int32Array(out.buffer)[0] !== 0;
  }

  /**
   * The bytes this image holds itself (rbd_diff_iterate2 over the whole image, without the
   * parent's data): for a clone, what it wrote, rounded up to whole objects where a write
   * copied the parent's object up. Without blocking the calling thread: a round trip per
   * object (or one per image with fast-diff).
   */
  async allocatedBytesAsync(): Promise<number> {
    const size = await this.sizeAsync();
    let total = 0;
    const callback = Deno.UnsafeCallback.threadSafe(
      DIFF_CALLBACK,
      (_offset: number | bigint, length: number | bigint, exists: number) => {
        if (exists) total += Number(length);
        return 0;
      },
    );
    try {
      const r = await this.#track(
        rbd().rbd_diff_iterate2_nonblocking(
          this.#live(),
          null,
          0n,
          BigInt(size),
          0,
          0,
          callback.pointer,
          null,
        ),
      );
      check(r, `rbd_diff_iterate2(${this.label})`);
    } finally {
      callback.close();
    }
    return total;
  }

  /** The image's id (`rbd info` shows it): its header object is `rbd_header.ID`. */
  id(): string {
    if (this.#id === null) {
      const buffer = new Uint8Array(new ArrayBuffer(128));
      const r = rbd().rbd_get_id(this.#live(), buffer, BigInt(buffer.length));
      check(r, `rbd_get_id(${this.label})`);
      this.#id = decodeCString(buffer, 0);
    }
    return this.#id;
  }

  /** Removes metadata `key`; false when it was not set. */
  metadataRemove(key: string): boolean {
    return runBlocking(
      metadataRemoveCalls(this.label, key),
      (name) => rbd().rbd_metadata_remove(this.#live(), name),
    );
  }

  /** Every metadata key and value (in pages of 64 keys; one round trip per page). */
  metadataList(): Map<string, string> {
    return runBlocking(
      metadataListCalls(this.label, ""),
      (from, keys, keyLength, values, valueLength) =>
        rbd().rbd_metadata_list(
          this.#live(),
          from,
          BigInt(METADATA_PAGE),
          keys,
          keyLength,
          values,
          valueLength,
        ),
    );
  }

  /**
   * Sets up asynchronous I/O with `slots` numbered slots whose completions signal `eventFd`
   * (it may be shared with kernel AIO and other images: reap each after a wake-up). One per
   * image; closing the image closes it.
   */
  openAio(slots: number, eventFd: EventFd): RbdAioContext {
    if (this.#aio !== null) throw new Error(`RBD image ${this.label} already has an AIO context`);
    this.#aio = new RbdAioContext(this, this.#live(), slots, eventFd);
    return this.#aio;
  }

  /** @internal Called by RbdAioContext.close. */
  _aioClosed(): void {
    this.#aio = null;
  }

  /**
   * A token for another thread to {@link borrow} this image with (for I/O). Keep this image
   * open until the borrower is done with it: closing it frees the handle under the borrower.
   */
  lend(): RbdImageToken {
    return {
      address: BigInt(Deno.UnsafePointer.value(this.#live())),
      pool: this.pool,
      image: this.image,
      snapshot: this.snapshot,
      readOnly: this.readOnly,
    };
  }

  /**
   * The image a {@link lend} token stands for, in this thread. Its {@link close} closes only
   * what this side opened (its AIO context): the lender closes the handle.
   */
  static borrow(token: RbdImageToken): RbdImage {
    const handle = Deno.UnsafePointer.create(token.address);
    if (handle === null) throw new RangeError("RbdImage.borrow: a null image handle");
    const spec = { pool: token.pool, image: token.image, snapshot: token.snapshot };
    return new RbdImage(null, handle, spec, token.readOnly);
  }

  /** Runs a call on a helper thread, remembered until it ends (closeAsync waits for it). */
  #track<T>(call: Promise<T>): Promise<T> {
    this.#calls.add(call);
    const done = () => this.#calls.delete(call);
    call.then(done, done);
    return call;
  }

  /** As {@link size}, without blocking the calling thread. */
  async sizeAsync(): Promise<number> {
    const out = new Out64();
    const r = await this.#track(rbd().rbd_get_size_nonblocking(this.#live(), out.bytes));
    check(r, `rbd_get_size(${this.label})`);
    return Number(out.value);
  }

  /** As {@link metadataGet}, without blocking the calling thread. */
  metadataGetAsync(key: string): Promise<string | undefined> {
    return runOnHelperThread(
      metadataGetCalls(this.label, key),
      (name, value, length) =>
        this.#track(rbd().rbd_metadata_get_nonblocking(this.#live(), name, value, length)),
    );
  }

  /** As {@link metadataSet}, without blocking the calling thread. */
  metadataSetAsync(key: string, value: string): Promise<void> {
    return runOnHelperThread(
      metadataSetCalls(this.label, key, value),
      (name, text) => this.#track(rbd().rbd_metadata_set_nonblocking(this.#live(), name, text)),
    );
  }

  /** As {@link metadataRemove}, without blocking the calling thread. */
  metadataRemoveAsync(key: string): Promise<boolean> {
    return runOnHelperThread(
      metadataRemoveCalls(this.label, key),
      (name) => this.#track(rbd().rbd_metadata_remove_nonblocking(this.#live(), name)),
    );
  }

  /**
   * As {@link metadataList}, without blocking the calling thread; with `prefix`, only the keys
   * that start with it, the prefix itself excepted (listed from the prefix on: one round trip
   * when they fit one page of 64).
   */
  metadataListAsync(prefix = ""): Promise<Map<string, string>> {
    return runOnHelperThread(
      metadataListCalls(this.label, prefix),
      (from, keys, keyLength, values, valueLength) =>
        this.#track(
          rbd().rbd_metadata_list_nonblocking(
            this.#live(),
            from,
            BigInt(METADATA_PAGE),
            keys,
            keyLength,
            values,
            valueLength,
          ),
        ),
    );
  }

  /**
   * Calls `onUpdate` on this thread after the image's header changed: metadata set or removed,
   * resized, snapshots, whichever client did it (rbd_update_watch; librbd's header watch sees
   * the other clients' notifications). Not for a read-only open, which has no header watch.
   *
   * librbd calls back on its own thread (`rbd_op_threads`, one by default), which waits until
   * this thread has run `onUpdate` (a thread-safe callback): keep `onUpdate` short, and never
   * make a blocking librbd call on this thread while a watch is registered (the callback would
   * wait for it, and it for the callback). One watch per image; closing the image ends it.
   */
  watchUpdates(onUpdate: () => void): void {
    if (this.#watch !== null) throw new Error(`RBD image ${this.label} is already watched`);
    const callback = Deno.UnsafeCallback.threadSafe(UPDATE_CALLBACK, () => onUpdate());
    callback.unref(); // a registered watch does not keep the process alive
    const out = new Out64();
    const r = rbd().rbd_update_watch(this.#live(), out.bytes, callback.pointer, null);
    if (r < 0) {
      callback.close();
      check(r, `rbd_update_watch(${this.label})`);
    }
    this.#watch = { handle: out.value, callback };
  }

  /** Ends the {@link watchUpdates} watch, if any, without blocking the calling thread. */
  async unwatchUpdates(): Promise<void> {
    const watch = this.#watch;
    if (watch === null || this.#handle === null) return;
    this.#watch = null;
    try {
      const r = await this.#track(rbd().rbd_update_unwatch_nonblocking(this.#handle, watch.handle));
      check(r, `rbd_update_unwatch(${this.label})`);
    } finally {
      watch.callback.close();
    }
  }

  /** Closes the AIO context (waiting for requests in flight), then the image. Idempotent. */
  close(): void {
    if (this.#handle === null) return;
    if (this.#watch !== null) {
      throw new Error(`RBD image ${this.label}: unwatchUpdates() before a blocking close`);
    }
    this.#aio?.close();
    const handle = this.#handle;
    this.#handle = null;
    if (this.#cluster === null) return; // borrowed: the lender closes the handle
    this.#cluster._forget(this);
    check(rbd().rbd_close(handle), `rbd_close(${this.label})`);
  }

  /**
   * As {@link close}, without blocking the calling thread: waits for this image's calls on
   * helper threads, then runs rbd_close on one. The AIO context, if any, must be idle.
   */
  async closeAsync(): Promise<void> {
    if (this.#handle === null) return;
    await this.unwatchUpdates().catch(() => {});
    if (this.#handle === null) return; // closed meanwhile
    this.#aio?.close();
    const handle = this.#handle;
    this.#handle = null;
    await Promise.allSettled([...this.#calls]);
    if (this.#cluster === null) return;
    this.#cluster._forget(this);
    check(await rbd().rbd_close_nonblocking(handle), `rbd_close(${this.label})`);
  }
}

/** The rbd_diff_iterate2 callback: int (*)(uint64_t offset, size_t length, int exists, void *). */
const DIFF_CALLBACK = { parameters: ["u64", "usize", "i32", "pointer"], result: "i32" } as const;

/** rbd_update_callback_t: void (*)(void *arg). */
const UPDATE_CALLBACK = { parameters: ["pointer"], result: "void" } as const;

const ENOENT = 2;
const ERANGE = 34;
const METADATA_PAGE = 64;

const decoder = new TextDecoder();

function decodeCString(bytes: Uint8Array, from: number): string {
  const end = bytes.indexOf(0, from);
  return decoder.decode(bytes.subarray(from, end < 0 ? bytes.length : end));
}

/**
 * The librbd calls of one operation, written once for its blocking variant and its variant on
 * a helper thread: the generator yields each call's buffer arguments and is sent its result.
 * The buffers stay referenced by the generator until the call that uses them has returned.
 */
type Calls<Args extends Uint8Array[], Result> = Generator<Args, Result, number>;

/** Drives `calls` with `call` blocking the calling thread. */
function runBlocking<Args extends Uint8Array[], Result>(
  calls: Calls<Args, Result>,
  call: (...args: Args) => number,
): Result {
  let step = calls.next();
  while (!step.done) step = calls.next(call(...step.value));
  return step.value;
}

/** Drives `calls` with `call` running on a helper thread (a nonblocking symbol). */
async function runOnHelperThread<Args extends Uint8Array[], Result>(
  calls: Calls<Args, Result>,
  call: (...args: Args) => Promise<number>,
): Promise<Result> {
  let step = calls.next();
  while (!step.done) step = calls.next(await call(...step.value));
  return step.value;
}

const POOL_ADVICE: Advice = {
  EPERM: "no access to the pool: give the user 'profile rbd' caps on it",
  EACCES: "no access to the pool: give the user 'profile rbd' caps on it",
};

/** The C string at `address` (librbd-allocated), or "" for NULL. */
function pointedString(address: bigint): string {
  const p = Deno.UnsafePointer.create(address);
  return p === null ? "" : Deno.UnsafePointerView.getCString(p);
}

const READ_ONLY_ADVICE: Advice = { EROFS: "the image is open read-only (a snapshot)" };

/** rbd_metadata_get(key, value, &length), again with more room while the value grows. */
function* metadataGetCalls(
  label: string,
  key: string,
): Calls<[Uint8Array, Uint8Array, Uint8Array], string | undefined> {
  const name = cString(key);
  let room = 4096;
  for (let attempt = 0; attempt < 3; attempt++) {
    const value = new Uint8Array(new ArrayBuffer(room));
    const length = new Out64();
    length.value = BigInt(room);
    const r = yield [name, value, length.bytes];
    if (r === -ERANGE) {
      room = Number(length.value);
      continue;
    }
    if (r === -ENOENT) return undefined;
    check(r, `rbd_metadata_get(${label}, ${key})`);
    return decodeCString(value, 0);
  }
  throw new Error(`rbd_metadata_get(${label}, ${key}): the value kept growing`);
}

/** rbd_metadata_set(key, value). */
function* metadataSetCalls(
  label: string,
  key: string,
  value: string,
): Calls<[Uint8Array, Uint8Array], void> {
  const r = yield [cString(key), cString(value)];
  check(r, `rbd_metadata_set(${label}, ${key})`, READ_ONLY_ADVICE);
}

/** rbd_metadata_remove(key); false when the key was not set. */
function* metadataRemoveCalls(label: string, key: string): Calls<[Uint8Array], boolean> {
  const r = yield [cString(key)];
  if (r === -ENOENT) return false;
  check(r, `rbd_metadata_remove(${label}, ${key})`, READ_ONLY_ADVICE);
  return true;
}

/**
 * rbd_metadata_list(start, keys, &keyLength, values, &valueLength), a page of
 * {@link METADATA_PAGE} keys at a time, for the keys that start with `prefix` ("" for all).
 */
function* metadataListCalls(
  label: string,
  prefix: string,
): Calls<[Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array], Map<string, string>> {
  const all = new Map<string, string>();
  const keyLength = new Out64();
  const valueLength = new Out64();
  // rbd_metadata_list lists the keys after `start` (exclusive).
  let start = prefix;
  let room = 8192;
  for (;;) {
    const keys = new Uint8Array(new ArrayBuffer(room));
    const values = new Uint8Array(new ArrayBuffer(room));
    keyLength.value = BigInt(room);
    valueLength.value = BigInt(room);
    const r = yield [cString(start), keys, keyLength.bytes, values, valueLength.bytes];
    if (r === -ERANGE) {
      room = Math.max(Number(keyLength.value), Number(valueLength.value), room * 2);
      continue;
    }
    check(r, `rbd_metadata_list(${label})`);
    let k = 0;
    let v = 0;
    let count = 0;
    const keyEnd = Number(keyLength.value);
    while (k < keyEnd) {
      const keyNul = keys.indexOf(0, k);
      const valueNul = values.indexOf(0, v);
      if (keyNul <= k || valueNul < 0) break; // an empty key, or no terminator: the end
      const key = decoder.decode(keys.subarray(k, keyNul));
      if (!key.startsWith(prefix)) return all; // past the prefix: sorted, so done
      all.set(key, decoder.decode(values.subarray(v, valueNul)));
      start = key;
      count++;
      k = keyNul + 1;
      v = valueNul + 1;
    }
    if (count < METADATA_PAGE) return all;
  }
}

const TWO_32 = 0x1_0000_0000;
const OP_NONE = 0;
const OP_READ = 1;
const OP_WRITE = 2;
const OP_FLUSH = 3;
// rbd_poll_io_events copies into a variable-length array on the caller's stack (8 bytes per
// completion asked for): ask for at most this many at a time.
const POLL_BATCH = 256;
// Slot states besides 0 (free).
const IN_LIBRBD = 1;
const FAILED_AT_SUBMIT = 2;

/**
 * librbd asynchronous I/O on one image, driven like {@link AioContext}: numbered slots
 * (0 .. slots-1), prepared with {@link prepareVector}/{@link setIovec} or {@link prepareSync},
 * submitted in batches, reaped after the eventfd fires. Results are bytes transferred (0 for
 * a flush) or -errno: -EINVAL for a read or write starting at or past the end, -EROFS for a
 * write to a read-only image, -ETIMEDOUT when an OSD did not answer within
 * `rados_osd_op_timeout`. A read that straddles the end comes back short; a write that
 * straddles it is cut at the end by librbd, which reports success without a count (a write
 * reports the bytes it was given), so the caller bounds requests by the image size itself.
 *
 * Memory librbd sees, one {@link Memory} region:
 * ```
 * offset 0          rbd_completion_t [slots]       written by rbd_aio_create_completion
 *        polled     rbd_completion_t [256]         filled by rbd_poll_io_events
 *        iovecs     struct iovec     [slots][32]   16 bytes each
 * ```
 * Per request librbd allocates its completion (a C++ object; completions cannot be reused);
 * on our side a request costs two BigInts (its image offset and its completion handle, which
 * Deno's fast calls need as BigInt) and nothing else.
 */
export class RbdAioContext {
  /** Number of slots, and the most events one `reap` returns. */
  readonly slots: number;
  /** The eventfd librbd signals (once per finished request). */
  readonly eventFd: EventFd;
  readonly #owner: RbdImage;
  readonly #image: Deno.PointerObject;
  readonly #memory: Memory;
  readonly #completions: BigUint64Array;
  readonly #polled: BigUint64Array;
  readonly #polledPointer: Deno.PointerObject;
  readonly #completionOut: Deno.PointerObject[] = [];
  readonly #iovecPointers: Deno.PointerObject[] = [];
  readonly #iovecWord: number;
  readonly #words: Uint32Array;
  readonly #slotArgs: bigint[] = [];
  // Per slot: what it holds, its image offset (u64 as u32 halves, read back as one BigInt),
  // its iovec count, and whether a request on it is in flight.
  readonly #op: Uint8Array;
  readonly #offsets: BigUint64Array;
  readonly #offsetWords: Uint32Array;
  readonly #iovCount: Uint8Array;
  readonly #busy: Uint8Array;
  // Bytes a write in flight carries: librbd reports 0 for a successful write.
  readonly #writeLength: Float64Array;
  #inFlight = 0;
  // Reaped events, and failures found at submit time (reported by the next reap).
  readonly #eventSlots: Int32Array;
  readonly #eventResults: Float64Array;
  readonly #earlySlots: Int32Array;
  readonly #earlyResults: Int32Array;
  #early = 0;
  #closed = false;

  /** @internal Use {@link RbdImage.openAio}. */
  constructor(owner: RbdImage, image: Deno.PointerObject, slots: number, eventFd: EventFd) {
    if (!Number.isInteger(slots) || slots < 1 || slots > 65536) {
      throw new RangeError(`RbdAioContext: slots must be 1..65536, got ${slots}`);
    }
    this.slots = slots;
    this.eventFd = eventFd;
    this.#owner = owner;
    this.#image = image;
    const polled = slots * 8;
    const iovecs = polled + POLL_BATCH * 8;
    this.#memory = Memory.allocate(iovecs + slots * RBD_MAX_IOVECS * IOVEC.size);
    const buffer = this.#memory.bytes.buffer;
    this.#completions = new BigUint64Array(buffer, 0, slots);
    this.#polled = new BigUint64Array(buffer, polled, POLL_BATCH);
    this.#polledPointer = _memoryPointerAt(this.#memory, polled);
    this.#words = new Uint32Array(buffer);
    this.#iovecWord = iovecs / 4;
    for (let s = 0; s < slots; s++) {
      this.#completionOut.push(_memoryPointerAt(this.#memory, s * 8));
      this.#iovecPointers.push(
        _memoryPointerAt(this.#memory, iovecs + s * RBD_MAX_IOVECS * IOVEC.size),
      );
      this.#slotArgs.push(BigInt(s));
    }
    this.#op = new Uint8Array(slots);
    this.#offsets = new BigUint64Array(slots);
    this.#offsetWords = new Uint32Array(this.#offsets.buffer);
    this.#iovCount = new Uint8Array(slots);
    this.#busy = new Uint8Array(slots);
    this.#writeLength = new Float64Array(slots);
    this.#eventSlots = new Int32Array(slots);
    this.#eventResults = new Float64Array(slots);
    this.#earlySlots = new Int32Array(slots);
    this.#earlyResults = new Int32Array(slots);
    const r = rbd().rbd_set_image_notification(image, eventFd.fd, EVENT_TYPE_EVENTFD);
    if (r < 0) {
      this.#memory.close();
      throw sysError(`rbd_set_image_notification(${owner.label}, eventfd ${eventFd.fd})`, -r);
    }
  }

  /** Requests submitted and not yet reaped. */
  get inFlight(): number {
    return this.#inFlight;
  }

  #checkSlot(slot: number): void {
    if (!(slot >= 0 && slot < this.slots) || (slot | 0) !== slot) {
      throw new RangeError(`RbdAioContext: slot ${slot} outside 0..${this.slots - 1}`);
    }
    if (this.#busy[slot]) throw new RangeError(`RbdAioContext: slot ${slot} is in flight`);
  }

  /**
   * Prepares `slot` for a vectored read (IOCB_CMD_PREADV) or write (IOCB_CMD_PWRITEV) of
   * `iovCount` iovecs (set them with {@link setIovec}) at byte `offset` of the image.
   */
  prepareVector(slot: number, opcode: number, offset: number, iovCount: number): void {
    this.#checkSlot(slot);
    if (opcode !== IOCB_CMD_PREADV && opcode !== IOCB_CMD_PWRITEV) {
      throw new RangeError(`RbdAioContext: opcode ${opcode} is not IOCB_CMD_PREADV/PWRITEV`);
    }
    if (!(iovCount >= 1 && iovCount <= RBD_MAX_IOVECS)) {
      throw new RangeError(`RbdAioContext: iovCount ${iovCount} outside 1..${RBD_MAX_IOVECS}`);
    }
    if (!(offset >= 0 && offset <= Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`RbdAioContext: bad image offset ${offset}`);
    }
    this.#op[slot] = opcode === IOCB_CMD_PREADV ? OP_READ : OP_WRITE;
    this.#iovCount[slot] = iovCount;
    this.#offsetWords[2 * slot] = offset >>> 0;
    this.#offsetWords[2 * slot + 1] = Math.floor(offset / TWO_32);
  }

  /**
   * Points iovec `index` of `slot` at `memory[offsetInMemory .. offsetInMemory + length]`.
   * The memory must stay open until the slot's completion is reaped.
   */
  setIovec(slot: number, index: number, memory: Memory, offsetInMemory: number, length: number) {
    this.#checkSlot(slot);
    if (!(index >= 0 && index < RBD_MAX_IOVECS)) {
      throw new RangeError(`RbdAioContext: iovec index ${index} outside 0..${RBD_MAX_IOVECS - 1}`);
    }
    if (!(offsetInMemory >= 0 && length >= 0 && offsetInMemory + length <= memory.length)) {
      throw new RangeError(
        `RbdAioContext: iovec [${offsetInMemory}, +${length}) outside the ` +
          `${memory.length}-byte Memory`,
      );
    }
    const address = _memoryAddress(memory) + offsetInMemory;
    const w = this.#iovecWord + (slot * RBD_MAX_IOVECS + index) * (IOVEC.size / 4);
    const words = this.#words;
    words[w] = address >>> 0;
    words[w + 1] = Math.floor(address / TWO_32);
    words[w + 2] = length >>> 0;
    words[w + 3] = Math.floor(length / TWO_32);
  }

  /** Prepares `slot` as a flush (rbd_aio_flush: every write completed before is durable). */
  prepareSync(slot: number): void {
    this.#checkSlot(slot);
    this.#op[slot] = OP_FLUSH;
  }

  /**
   * Submits `slots[0..count)`; returns `count` (librbd queues every request). A request
   * librbd refuses at once (it only does so for an invalid iovec) completes like any other,
   * with its -errno, and the eventfd is signalled.
   */
  submit(slots: Int32Array, count: number): number {
    if (count === 0) return 0;
    if (this.#closed) throw new Error(`RbdAioContext(${this.#owner.label}) is closed`);
    if (!(count > 0 && count <= slots.length)) {
      throw new RangeError(`RbdAioContext.submit: bad count ${count}`);
    }
    const lib = rbd();
    let failed = false;
    for (let i = 0; i < count; i++) {
      const slot = slots[i];
      this.#checkSlot(slot);
      const op = this.#op[slot];
      if (op === OP_NONE) {
        throw new RangeError(`RbdAioContext.submit: slot ${slot} is not prepared`);
      }
      const created = lib.rbd_aio_create_completion(
        this.#slotArgs[slot],
        null,
        this.#completionOut[slot],
      );
      if (created < 0) throw sysError(`rbd_aio_create_completion(${this.#owner.label})`, -created);
      const c = this.#completions[slot];
      this.#writeLength[slot] = op === OP_WRITE ? this.#vectorLength(slot) : 0;
      const r = op === OP_READ
        ? lib.rbd_aio_readv(
          this.#image,
          this.#iovecPointers[slot],
          this.#iovCount[slot],
          this.#offsets[slot],
          c,
        )
        : op === OP_WRITE
        ? lib.rbd_aio_writev(
          this.#image,
          this.#iovecPointers[slot],
          this.#iovCount[slot],
          this.#offsets[slot],
          c,
        )
        : lib.rbd_aio_flush(this.#image, c);
      this.#op[slot] = OP_NONE;
      this.#inFlight++;
      if (r >= 0) {
        this.#busy[slot] = IN_LIBRBD;
      } else {
        lib.rbd_aio_release(c);
        this.#busy[slot] = FAILED_AT_SUBMIT;
        this.#earlySlots[this.#early] = slot;
        this.#earlyResults[this.#early] = r;
        this.#early++;
        failed = true;
      }
    }
    if (failed) this.eventFd.signal();
    return count;
  }

  /**
   * Collects up to `max` finished requests without waiting (rbd_poll_io_events, then for each
   * its slot, its result and rbd_aio_release); read them with {@link eventSlot} and
   * {@link eventResult}. Drain the eventfd before reaping, and reap until fewer than `max`
   * come back.
   */
  reap(max: number = this.slots): number {
    const limit = Math.min(max, this.slots);
    if (!(limit > 0) || this.#closed) return 0;
    let n = 0;
    while (this.#early > 0 && n < limit) {
      this.#early--;
      this.#finish(n++, this.#earlySlots[this.#early], this.#earlyResults[this.#early]);
    }
    const lib = rbd();
    while (n < limit) {
      const want = Math.min(limit - n, POLL_BATCH);
      const polled = lib.rbd_poll_io_events(this.#image, this.#polledPointer, want);
      if (polled < 0) throw sysError(`rbd_poll_io_events(${this.#owner.label})`, -polled);
      for (let i = 0; i < polled; i++) {
        const c = this.#polled[i];
        const slot = lib.rbd_aio_get_arg(c);
        const result = Number(lib.rbd_aio_get_return_value(c));
        lib.rbd_aio_release(c);
        this.#finish(n++, slot, result);
      }
      if (polled < want) break;
    }
    return n;
  }

  #vectorLength(slot: number): number {
    const words = this.#words;
    let w = this.#iovecWord + slot * RBD_MAX_IOVECS * (IOVEC.size / 4) + 2;
    let total = 0;
    for (let j = this.#iovCount[slot]; j > 0; j--, w += IOVEC.size / 4) {
      total += words[w] + words[w + 1] * TWO_32;
    }
    return total;
  }

  #finish(i: number, slot: number, result: number): void {
    this.#eventSlots[i] = slot;
    this.#eventResults[i] = result === 0 ? this.#writeLength[slot] : result;
    this.#busy[slot] = 0;
    this.#inFlight--;
  }

  /** The slot of reaped event `i`. */
  eventSlot(i: number): number {
    return this.#eventSlots[i];
  }

  /** The result of reaped event `i`: bytes transferred (0 for a flush), or -errno. */
  eventResult(i: number): number {
    return this.#eventResults[i];
  }

  /**
   * Waits for the requests in flight (blocking, bounded by the op timeouts), releases them
   * unreported, and frees the slots. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    const lib = rbd();
    for (let slot = 0; slot < this.slots; slot++) {
      if (this.#busy[slot] === IN_LIBRBD) lib.rbd_aio_wait_for_complete(this.#completions[slot]);
    }
    // Every completion is now queued for rbd_poll_io_events: reap (and release) them all.
    while (this.#inFlight > 0 && this.reap() > 0);
    this.#closed = true;
    this.#memory.close();
    this.#owner._aioClosed();
  }
}
