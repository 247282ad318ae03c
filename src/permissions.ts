/**
 * The Deno permission flags the programs need, in one place (README, Dockerfile, systemd unit,
 * demo, tests and benchmark use these):
 * - `--allow-ffi`: packet sockets, AIO, epoll — the whole data path;
 * - `--allow-read` / `--allow-write`: configuration, exports, state directory, pid file;
 * - `--allow-env`: Deno's FFI loader and the benchmark's mechanism switches;
 * - `--allow-sys`: the host name (the default IDENTIFY serial, the daemon's name among the hosts
 *   serving an RBD image);
 * - `--allow-net`: the control socket (Deno counts Unix sockets as network access).
 *
 * @module
 */

/** Flags for `deno run ... ggaoed.ts`. */
export const DAEMON_FLAGS: readonly string[] = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-net",
];

/** Flags for `deno run ... ggaoectl.ts`. */
export const CTL_FLAGS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-net",
];
