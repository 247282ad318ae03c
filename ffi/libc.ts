/**
 * The foreign symbol tables: the one place that opens `libc.so.6` and `libaio.so.1`.
 *
 * Each library is opened lazily, once per module instance. A Worker is a thread with its own
 * module instances, so every worker opens its own handle and computes its own `errno` location
 * (errno is per thread).
 *
 * Nothing here leaves `ffi/`: the classes in the sibling modules wrap these symbols and hand out
 * numbers, `Uint8Array`s and errors. Integer results are declared `i32` where the C result is a
 * small `ssize_t`/`long` (counts below 2^31 or -1): the low half of `rax` is the same number, and
 * a 32-bit result is returned as a plain number without a BigInt check.
 *
 * Variadic functions (`open`, `fcntl`, `ioctl`, `syscall`) are called with fixed signatures:
 * on x86-64 the variadic arguments travel in the same registers as fixed ones, and every
 * argument we pass to them is 64 bits wide (or a promoted int) so no register holds stale upper
 * bits. This, the struct layouts and the syscall numbers are why the layer is x86-64 only.
 *
 * @module
 */

const LIBC_SYMBOLS = {
  /** int *__errno_location(void) */
  __errno_location: { parameters: [], result: "pointer" },
  /** char *strerror(int errnum) */
  strerror: { parameters: ["i32" /* int errnum */], result: "pointer" },

  /** void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) */
  mmap: {
    parameters: [
      "pointer", // void *addr
      "usize", // size_t length
      "i32", // int prot
      "i32", // int flags
      "i32", // int fd
      "i64", // off_t offset
    ],
    result: "pointer",
  },
  /** int munmap(void *addr, size_t length) */
  munmap: { parameters: ["pointer", /* void *addr */ "usize" /* size_t length */], result: "i32" },
  /** int mprotect(void *addr, size_t len, int prot) */
  mprotect: {
    parameters: ["pointer", /* void *addr */ "usize", /* size_t len */ "i32" /* int prot */],
    result: "i32",
  },
  /** int sigaction(int signum, const struct sigaction *act, struct sigaction *oldact) */
  sigaction: {
    parameters: ["i32", /* int signum */ "buffer", /* const struct sigaction *act */ "buffer"],
    result: "i32",
  },

  /** int open(const char *pathname, int flags, mode_t mode) */
  open: {
    parameters: ["buffer", /* const char *pathname */ "i32", /* int flags */ "u32" /* mode_t */],
    result: "i32",
  },
  /** void *memcpy(void *dest, const void *src, size_t n) */
  memcpy: {
    parameters: ["buffer", /* void *dest */ "buffer", /* const void *src */ "usize" /* size_t n */],
    result: "void",
  },
  /** struct if_nameindex *if_nameindex(void) */
  if_nameindex: { parameters: [], result: "pointer" },
  /** void if_freenameindex(struct if_nameindex *ptr) */
  if_freenameindex: { parameters: ["pointer" /* struct if_nameindex *ptr */], result: "void" },
  /** int flock(int fd, int operation) */
  flock: { parameters: ["i32", /* int fd */ "i32" /* int operation */], result: "i32" },
  /** int lockf(int fd, int cmd, off_t len) */
  lockf: {
    parameters: ["i32", /* int fd */ "i32", /* int cmd */ "i64" /* off_t len */],
    result: "i32",
  },
  /** ssize_t readlink(const char *pathname, char *buf, size_t bufsiz) */
  readlink: {
    parameters: ["buffer", /* const char *pathname */ "buffer", /* char *buf */ "usize"],
    result: "isize",
  },
  /** uid_t geteuid(void) */
  geteuid: { parameters: [], result: "u32" },
  /** gid_t getegid(void) */
  getegid: { parameters: [], result: "u32" },
  /** int fchmod(int fd, mode_t mode) */
  fchmod: { parameters: ["i32", /* int fd */ "u32" /* mode_t mode */], result: "i32" },
  /** int ftruncate(int fd, off_t length) */
  ftruncate: { parameters: ["i32", /* int fd */ "i64" /* off_t length */], result: "i32" },
  /** char *realpath(const char *path, char *resolved_path) */
  realpath: {
    parameters: ["buffer", /* const char *path */ "buffer" /* char *resolved_path */],
    result: "pointer",
  },
  /** ssize_t preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset); i32 result:
   * one call moves far less than 2 GiB */
  preadv: {
    parameters: [
      "i32",
      /* int fd */ "pointer",
      /* const struct iovec *iov */ "i32",
      /* int */ "i64",
    ],
    result: "i32",
  },
  /** ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) */
  pwritev: {
    parameters: [
      "i32",
      /* int fd */ "pointer",
      /* const struct iovec *iov */ "i32",
      /* int */ "i64",
    ],
    result: "i32",
  },
  /** int close(int fd) */
  close: { parameters: ["i32" /* int fd */], result: "i32" },
  /** ssize_t read(int fd, void *buf, size_t count) */
  read: {
    parameters: ["i32", /* int fd */ "buffer", /* void *buf */ "usize" /* size_t count */],
    result: "i32",
  },
  /** ssize_t write(int fd, const void *buf, size_t count) */
  write: {
    parameters: ["i32", /* int fd */ "buffer", /* const void *buf */ "usize" /* size_t count */],
    result: "i32",
  },
  /** ssize_t pread(int fd, void *buf, size_t count, off_t offset) */
  pread: {
    parameters: [
      "i32", // int fd
      "buffer", // void *buf
      "usize", // size_t count
      "i64", // off_t offset
    ],
    result: "isize",
  },
  /** ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) */
  pwrite: {
    parameters: [
      "i32", // int fd
      "buffer", // const void *buf
      "usize", // size_t count
      "i64", // off_t offset
    ],
    result: "isize",
  },
  /** int stat(const char *pathname, struct stat *statbuf) */
  stat: {
    parameters: ["buffer", /* const char *pathname */ "buffer" /* struct stat *statbuf */],
    result: "i32",
  },
  /** int fstat(int fd, struct stat *statbuf) */
  fstat: { parameters: ["i32", /* int fd */ "buffer" /* struct stat *statbuf */], result: "i32" },
  /** int ioctl(int fd, unsigned long request, void *argp) */
  ioctl: {
    parameters: ["i32", /* int fd */ "u64", /* unsigned long request */ "buffer" /* void *argp */],
    result: "i32",
  },
  /** int fcntl(int fd, int cmd, long arg) */
  fcntl: {
    parameters: ["i32", /* int fd */ "i32", /* int cmd */ "i64" /* long arg */],
    result: "i32",
  },
  /** int fsync(int fd) */
  fsync: { parameters: ["i32" /* int fd */], result: "i32" },
  /** int fdatasync(int fd) */
  fdatasync: { parameters: ["i32" /* int fd */], result: "i32" },

  /** int socket(int domain, int type, int protocol) */
  socket: {
    parameters: ["i32", /* int domain */ "i32", /* int type */ "i32" /* int protocol */],
    result: "i32",
  },
  /** int bind(int sockfd, const struct sockaddr *addr, socklen_t addrlen) */
  bind: {
    parameters: [
      "i32", // int sockfd
      "buffer", // const struct sockaddr *addr
      "u32", // socklen_t addrlen
    ],
    result: "i32",
  },
  /** int connect(int sockfd, const struct sockaddr *addr, socklen_t addrlen) */
  connect: {
    parameters: [
      "i32", // int sockfd
      "buffer", // const struct sockaddr *addr
      "u32", // socklen_t addrlen
    ],
    result: "i32",
  },
  /** int setsockopt(int sockfd, int level, int optname, const void *optval, socklen_t optlen) */
  setsockopt: {
    parameters: [
      "i32", // int sockfd
      "i32", // int level
      "i32", // int optname
      "buffer", // const void *optval
      "u32", // socklen_t optlen
    ],
    result: "i32",
  },
  /** int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen) */
  getsockopt: {
    parameters: [
      "i32", // int sockfd
      "i32", // int level
      "i32", // int optname
      "buffer", // void *optval
      "buffer", // socklen_t *optlen
    ],
    result: "i32",
  },
  /** ssize_t recv(int sockfd, void *buf, size_t len, int flags) */
  recv: {
    parameters: [
      "i32", // int sockfd
      "buffer", // void *buf
      "usize", // size_t len
      "i32", // int flags
    ],
    result: "i32",
  },
  /** ssize_t recvmsg(int sockfd, struct msghdr *msg, int flags) */
  recvmsg: {
    parameters: [
      "i32", // int sockfd
      "buffer", // struct msghdr *msg
      "i32", // int flags
    ],
    result: "i32",
  },
  /** ssize_t send(int sockfd, const void *buf, size_t len, int flags); buf may be NULL */
  send: {
    parameters: [
      "i32", // int sockfd
      "buffer", // const void *buf
      "usize", // size_t len
      "i32", // int flags
    ],
    result: "i32",
  },

  /** int epoll_create1(int flags) */
  epoll_create1: { parameters: ["i32" /* int flags */], result: "i32" },
  /** int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) */
  epoll_ctl: {
    parameters: [
      "i32", // int epfd
      "i32", // int op
      "i32", // int fd
      "buffer", // struct epoll_event *event
    ],
    result: "i32",
  },
  /** int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) —
   * blocks the calling thread, which is what the data-path worker wants. */
  epoll_wait: {
    parameters: [
      "i32", // int epfd
      "buffer", // struct epoll_event *events
      "i32", // int maxevents
      "i32", // int timeout (ms)
    ],
    result: "i32",
  },
  /** int eventfd(unsigned int initval, int flags) */
  eventfd: { parameters: ["u32", /* unsigned int initval */ "i32" /* int flags */], result: "i32" },
  /** int clock_gettime(clockid_t clockid, struct timespec *tp) */
  clock_gettime: {
    parameters: ["i32", /* clockid_t clockid */ "buffer" /* struct timespec *tp */],
    result: "i32",
  },
  /** int timerfd_create(int clockid, int flags) */
  timerfd_create: {
    parameters: ["i32", /* int clockid */ "i32" /* int flags */],
    result: "i32",
  },
  /** int timerfd_settime(int fd, int flags, const struct itimerspec *new, struct itimerspec *old) */
  timerfd_settime: {
    parameters: [
      "i32", // int fd
      "i32", // int flags
      "buffer", // const struct itimerspec *new_value
      "buffer", // struct itimerspec *old_value (NULL)
    ],
    result: "i32",
  },

  // Kernel AIO through syscall(2), for hosts without libaio. `long syscall(long number, ...)`;
  // the results are 0, a count, or -1 with errno set.
  /** long syscall(SYS_io_setup, unsigned nr_events, aio_context_t *ctx_idp) */
  sys_io_setup: {
    name: "syscall",
    parameters: ["i64", /* long number */ "i64", /* unsigned nr_events */ "pointer" /* ctxp */],
    result: "i32",
  },
  /** long syscall(SYS_io_destroy, aio_context_t ctx_id) */
  sys_io_destroy: {
    name: "syscall",
    parameters: ["i64", /* long number */ "pointer" /* aio_context_t ctx_id */],
    result: "i32",
  },
  /** long syscall(SYS_io_submit, aio_context_t ctx_id, long nr, struct iocb **iocbpp) */
  sys_io_submit: {
    name: "syscall",
    parameters: [
      "i64", // long number
      "pointer", // aio_context_t ctx_id
      "i64", // long nr
      "pointer", // struct iocb **iocbpp
    ],
    result: "i32",
  },
  /** long syscall(SYS_io_getevents, aio_context_t ctx_id, long min_nr, long nr,
   *               struct io_event *events, struct timespec *timeout) */
  sys_io_getevents: {
    name: "syscall",
    parameters: [
      "i64", // long number
      "pointer", // aio_context_t ctx_id
      "i64", // long min_nr
      "i64", // long nr
      "pointer", // struct io_event *events
      "pointer", // struct timespec *timeout
    ],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

// libaio returns -errno instead of setting errno.
const LIBAIO_SYMBOLS = {
  /** int io_setup(int maxevents, io_context_t *ctxp) */
  io_setup: {
    parameters: ["i32", /* int maxevents */ "pointer" /* io_context_t *ctxp */],
    result: "i32",
  },
  /** int io_destroy(io_context_t ctx) */
  io_destroy: { parameters: ["pointer" /* io_context_t ctx */], result: "i32" },
  /** int io_submit(io_context_t ctx, long nr, struct iocb *ios[]) */
  io_submit: {
    parameters: ["pointer", /* io_context_t ctx */ "i64", /* long nr */ "pointer" /* iocb **ios */],
    result: "i32",
  },
  /** int io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
   *                   struct timespec *timeout) — with a zero timeout libaio looks at the
   * completion ring in user space and skips the system call when it is empty. */
  io_getevents: {
    parameters: [
      "pointer", // io_context_t ctx
      "i64", // long min_nr
      "i64", // long nr
      "pointer", // struct io_event *events
      "pointer", // struct timespec *timeout
    ],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** libc's symbols, typed. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];
/** libaio's symbols, typed. */
export type Libaio = Deno.DynamicLibrary<typeof LIBAIO_SYMBOLS>["symbols"];

let libcHandle: Libc | null = null;
let libaioHandle: Libaio | null = null;
let errnoView: Deno.UnsafePointerView | null = null;

/** Throws unless this is Linux on x86-64: the layouts and syscall numbers here are that ABI's. */
export function assertSupportedPlatform(): void {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new Error(
      `ggaoed's FFI layer supports Linux on x86-64 only (struct layouts and system call numbers ` +
        `are that ABI's); this is ${Deno.build.os}/${Deno.build.arch}`,
    );
  }
}

/** Opens `name` once the platform is known to be supported; a failure says what to do. */
function open<S extends Deno.ForeignLibraryInterface>(name: string, symbols: S, advice: string) {
  assertSupportedPlatform();
  try {
    return Deno.dlopen(name, symbols).symbols;
  } catch (cause) {
    throw new Error(`${name} could not be opened — ${advice}`, { cause });
  }
}

/** libc's symbols, opening `libc.so.6` on first use. */
export function libc(): Libc {
  return libcHandle ??= open(
    "libc.so.6",
    LIBC_SYMBOLS,
    "ggaoed needs glibc 2.33 or later, and Deno run with --allow-ffi",
  );
}

/** libaio's symbols, opening `libaio.so.1` on first use; throws with advice when missing. */
export function libaio(): Libaio {
  return libaioHandle ??= open(
    "libaio.so.1",
    LIBAIO_SYMBOLS,
    "install libaio1 (Debian) or libaio (Fedora); without it use the raw system call backend",
  );
}

/** Whether `libaio.so.1` can be opened (opening it if so). */
export function libaioAvailable(): boolean {
  try {
    libaio();
    return true;
  } catch {
    return false;
  }
}

/**
 * The calling thread's `errno`. Read it right after the failing call: the location is computed
 * once per module instance, i.e. once per thread (Workers load their own instance).
 */
export function errno(): number {
  if (errnoView === null) {
    const location = libc().__errno_location();
    if (location === null) throw new Error("__errno_location() returned NULL");
    errnoView = new Deno.UnsafePointerView(location);
  }
  return errnoView.getInt32();
}

/** NUL-terminated UTF-8 bytes of `text`, for `const char *` parameters. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const encoded = new TextEncoder().encode(text);
  const out = new Uint8Array(new ArrayBuffer(encoded.length + 1));
  out.set(encoded);
  return out;
}

const SMALL_BIGINT_LIMIT = 1 << 17;
const smallBigInts: bigint[] = [];

/**
 * `BigInt(n)` for 64-bit parameters (`size_t`, `long`) without allocating on the hot path:
 * Deno's fast calls take 64-bit integers as BigInt, and a number there falls back to a slow
 * call. Values below 2^17 (frame lengths, event counts) come from a table filled once.
 */
export function big(n: number): bigint {
  if (n >= 0 && n < SMALL_BIGINT_LIMIT) {
    if (n >= smallBigInts.length) {
      const upTo = Math.min(SMALL_BIGINT_LIMIT, Math.max(n + 1, 2 * smallBigInts.length, 1024));
      for (let i = smallBigInts.length; i < upTo; i++) smallBigInts.push(BigInt(i));
    }
    return smallBigInts[n];
  }
  return BigInt(n);
}
