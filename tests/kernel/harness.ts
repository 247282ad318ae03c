/**
 * Boots Debian's own kernel under qemu (TCG) as an AoE initiator, attached to a tap device in a
 * network namespace that the test creates, so a target on that tap (vblade or ggaoed) can be
 * exercised by the real Linux `aoe` driver. See tests/kernel/README.md.
 *
 * The guest image comes from scripts/kernel-initiator/prepare.sh (.cache/kernel/). Each run
 * appends a small cpio archive holding /guest/script.sh to the prepared initramfs; the guest's
 * /init loads the modules, brings eth0 up at the requested MTU, runs the script and powers off.
 * The script talks back with lines on the serial console:
 *   @@READY <kernel> mtu=<n>     modules loaded, eth0 up, aoe loaded
 *   @@RESULT <key> <value...>    from the guest helper `result KEY VALUE`
 *   @@GUEST-ERROR <message>      /init could not set the guest up
 *   @@EXIT <code>                the script's exit status, just before power-off
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (two levels above this file). */
export const REPO_ROOT: string = fileURLToPath(new URL("../../", import.meta.url));
/** Where prepare.sh puts the kernel, initramfs and current.json. */
export const KERNEL_CACHE: string = join(REPO_ROOT, ".cache", "kernel");

/** What prepare.sh built, as recorded in .cache/kernel/current.json (paths made absolute). */
export interface PreparedGuest {
  kernelVersion: string;
  vmlinuz: string;
  initrd: string;
  modules: string[];
  /** Whether the initramfs carries the host's mke2fs and e2fsck. */
  e2fsprogs: boolean;
}

/** Reads .cache/kernel/current.json; null when prepare.sh has not been run (or files are gone). */
export function loadPreparedGuest(): PreparedGuest | null {
  const file = join(KERNEL_CACHE, "current.json");
  if (!existsSync(file)) return null;
  const raw = JSON.parse(readFileSync(file, "utf8"));
  const guest: PreparedGuest = {
    kernelVersion: String(raw.kernelVersion),
    vmlinuz: join(KERNEL_CACHE, String(raw.vmlinuz)),
    initrd: join(KERNEL_CACHE, String(raw.initrd)),
    modules: (raw.modules as unknown[]).map(String),
    e2fsprogs: raw.e2fsprogs === true,
  };
  if (!existsSync(guest.vmlinuz) || !existsSync(guest.initrd)) return null;
  return guest;
}

/** Whether `command` is on PATH (or in the sbin directories root's PATH may lack). */
export function hostHas(command: string): boolean {
  const dirs = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":");
  // Root's PATH may lack the sbin directories where ip and vblade live.
  dirs.push("/usr/sbin", "/sbin");
  return dirs.some((d) => existsSync(join(d, command)));
}

/**
 * Why kernel-initiator tests cannot run here, or null when they can. Tests pass the result to
 * `Deno.test({ ignore })` and print it, so a skipped run says what is missing.
 */
export function kernelHarnessUnavailable(extraCommands: string[] = []): string | null {
  const reason = qemuOnTapUnavailable("kernel-initiator", extraCommands);
  if (reason) return reason;
  if (loadPreparedGuest() === null) {
    return "kernel guest not prepared: run scripts/kernel-initiator/prepare.sh first";
  }
  return null;
}

/**
 * Why `what` tests, which run qemu on a tap in a network namespace, cannot run here (Linux,
 * root, /dev/net/tun, ip, qemu and `extraCommands`), or null when they can.
 */
export function qemuOnTapUnavailable(what: string, extraCommands: string[] = []): string | null {
  if (Deno.build.os !== "linux") return `${what} tests need Linux`;
  if (Deno.uid() !== 0) return `${what} tests need root (network namespaces, tap)`;
  if (!existsSync("/dev/net/tun")) return `${what} tests need /dev/net/tun`;
  for (const cmd of ["ip", "qemu-system-x86_64", ...extraCommands]) {
    if (!hostHas(cmd)) return `${what} tests need '${cmd}' (see tests/kernel/README.md)`;
  }
  return null;
}

/** A network namespace holding tap devices, as created by withTapNamespace. */
export interface TapNamespace {
  netns: string;
  /** The first tap (the guest's eth0). */
  tap: string;
  /** Every tap, `tap` first (the guest's eth0, eth1, ...: see RunGuestOptions.extraTaps). */
  taps: string[];
  mtu: number;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")} failed (${out.code}): ${err}`);
  }
  return new TextDecoder().decode(out.stdout);
}

function shortId(): string {
  // Names must fit IFNAMSIZ (15) with a prefix; pid plus randomness keeps parallel runs apart.
  const rand = crypto.getRandomValues(new Uint8Array(2));
  const pid = (Deno.pid % 0x10000).toString(16).padStart(4, "0");
  return pid + Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Creates a fresh network namespace with loopback up and one tap device (up, at `mtu`), or
 * `options.taps` of them, runs `fn`, and deletes the namespace (and with it the taps)
 * afterwards, also when `fn` throws. Processes started in it must be stopped by `fn` (runGuest
 * and spawnInNamespace do).
 */
export async function withTapNamespace<T>(
  mtu: number,
  fn: (ns: TapNamespace) => Promise<T>,
  options: { taps?: number } = {},
): Promise<T> {
  const id = shortId();
  const taps = Array.from({ length: options.taps ?? 1 }, (_, i) => `gkt${id}${i || ""}`);
  const ns: TapNamespace = { netns: `ggk${id}`, tap: taps[0], taps, mtu };
  await run("ip", ["netns", "add", ns.netns]);
  try {
    await run("ip", ["-n", ns.netns, "link", "set", "lo", "up"]);
    for (const tap of taps) {
      await run("ip", ["-n", ns.netns, "tuntap", "add", tap, "mode", "tap"]);
      await run("ip", ["-n", ns.netns, "link", "set", tap, "mtu", String(mtu), "up"]);
    }
    return await fn(ns);
  } finally {
    await run("ip", ["netns", "del", ns.netns]).catch((e) => {
      console.error(`withTapNamespace: cleanup of ${ns.netns} failed: ${e}`);
    });
  }
}

/** A process running inside a namespace, stopped by PID. */
export interface NamespacedProcess {
  pid: number;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit status once it has exited. */
  status: Promise<Deno.CommandStatus>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<Deno.CommandStatus>;
  /** Sends `signal` at once (SIGKILL: the process dies as in a crash). */
  kill(signal: Deno.Signal): void;
  /** Writes `text` to its standard input (only when started with `stdin: true`). */
  write(text: string): Promise<void>;
}

async function collect(
  stream: ReadableStream<Uint8Array>,
  sink: (text: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
  sink(decoder.decode());
}

/**
 * Starts `command args...` inside `netns` (via `ip netns exec`, which execs in place, so the
 * PID is the command's own) with stdout and stderr collected.
 */
export function spawnInNamespace(
  netns: string,
  command: string,
  args: string[],
  options: { onOutput?: (text: string) => void; stdin?: boolean } = {},
): NamespacedProcess {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, command, ...args],
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const sink = (t: string) => {
    text += t;
    options.onOutput?.(t);
  };
  const readers = Promise.all([collect(child.stdout, sink), collect(child.stderr, sink)]);
  const status = readers.then(() => child.status);
  let exited = false;
  status.then(() => (exited = true));
  const input = options.stdin ? child.stdin.getWriter() : null;
  if (input) status.then(() => input.close().catch(() => {}));
  return {
    pid: child.pid,
    output: () => text,
    status,
    async write(t: string) {
      if (!input) throw new Error(`${command} was started without stdin`);
      if (!exited) await input.write(new TextEncoder().encode(t));
    },
    kill(signal: Deno.Signal) {
      if (exited) return;
      try {
        child.kill(signal);
      } catch { /* already gone */ }
    },
    async stop(graceMs = 2000) {
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
        const timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* already gone */ }
        }, graceMs);
        try {
          await status;
        } finally {
          clearTimeout(timer);
        }
      }
      return await status;
    },
  };
}

/** Options for one guest boot. */
export interface RunGuestOptions {
  netns: string;
  tap: string;
  /** MTU the guest sets on eth0 before loading aoe (the driver sizes requests from it). */
  mtu: number;
  /** busybox sh script, run after the helpers in scripts/kernel-initiator/guest/guest-lib.sh. */
  guestScript: string;
  /** Whole boot-to-power-off budget; qemu is killed (by PID) when it runs out. */
  timeoutMs: number;
  /** Guest NIC MAC address; a random locally administered one by default. */
  mac?: string;
  /**
   * More taps in `netns`, one more guest NIC each (eth1, eth2, ...), all given to the aoe
   * driver: a target per tap makes several paths to one device (multipath).
   */
  extraTaps?: string[];
  memoryMiB?: number;
  /** Extra aoe module parameters, e.g. ["aoe_deadsecs=10"]. */
  aoeParams?: string[];
  /** Extra files for the guest, by absolute path inside it (e.g. "/guest/data.bin"). */
  files?: Record<string, string | Uint8Array>;
  /** Called with console output as it arrives (e.g. for live debugging). */
  onOutput?: (text: string) => void;
  /**
   * Called once qemu runs, with a function that types a line on the guest's serial console:
   * the guest script reads it with the helper `wait_host WORD SECONDS` (tell the guest that
   * the host has done its part).
   */
  onStart?: (sendLine: (line: string) => Promise<void>) => void;
}

/** What one guest boot produced. */
export interface GuestRun {
  /** Everything on the serial console (kernel messages, script output, markers). */
  output: string;
  /** The script's exit status from @@EXIT, or null when the guest never got there. */
  exitCode: number | null;
  /** @@RESULT key value pairs (a repeated key keeps its last value). */
  results: Map<string, string>;
  /** @@GUEST-ERROR messages from /init. */
  guestErrors: string[];
  /** True when qemu was killed because timeoutMs ran out. */
  timedOut: boolean;
  /** Whether the guest reached @@READY (modules loaded, eth0 up). */
  ready: boolean;
  durationMs: number;
}

/** The last `lines` lines of `text` (a console or a log, for an assertion message). */
export function tail(text: string, lines = 40): string {
  return text.split("\n").slice(-lines).join("\n");
}

/** Parses the @@ markers out of serial console output. */
export function parseMarkers(
  output: string,
): Pick<GuestRun, "exitCode" | "results" | "guestErrors" | "ready"> {
  const results = new Map<string, string>();
  const guestErrors: string[] = [];
  let exitCode: number | null = null;
  let ready = false;
  for (const rawLine of output.split("\n")) {
    const line = rawLine.replace(/\r$/, "");
    // Anchored at line start so kernel messages and echoed text cannot fake a marker mid-line.
    const m = /^@@(READY|RESULT|GUEST-ERROR|EXIT)(?: (.*))?$/.exec(line);
    if (!m) continue;
    const rest = m[2] ?? "";
    switch (m[1]) {
      case "READY":
        ready = true;
        break;
      case "RESULT": {
        const sp = rest.indexOf(" ");
        if (sp < 0) results.set(rest, "");
        else results.set(rest.slice(0, sp), rest.slice(sp + 1));
        break;
      }
      case "GUEST-ERROR":
        guestErrors.push(rest);
        break;
      case "EXIT":
        exitCode = Number.parseInt(rest, 10);
        break;
    }
  }
  return { exitCode, results, guestErrors, ready };
}

/** Builds a cpio "newc" archive (the initramfs format) of regular files and their directories. */
export function buildCpio(files: Record<string, string | Uint8Array>): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  let length = 0;
  let ino = 0x4000; // away from anything small, though the kernel does not care for newc
  const push = (b: Uint8Array) => {
    parts.push(b);
    length += b.length;
  };
  const pad4 = () => {
    const r = length % 4;
    if (r) push(new Uint8Array(4 - r));
  };
  const entry = (name: string, mode: number, data: Uint8Array) => {
    const hex = (n: number) => n.toString(16).padStart(8, "0");
    const nameBytes = enc.encode(name + "\0");
    const fields = [ino++, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
    push(enc.encode("070701" + fields.map(hex).join("")));
    push(nameBytes);
    pad4();
    push(data);
    pad4();
  };
  const dirs = new Set<string>();
  const entries = Object.entries(files).map(([path, content]) => {
    const rel = path.replace(/^\/+/, "");
    if (!rel || rel.split("/").some((p) => p === "" || p === "." || p === "..")) {
      throw new Error(`buildCpio: bad path ${path}`);
    }
    const segs = rel.split("/");
    for (let i = 1; i < segs.length; i++) dirs.add(segs.slice(0, i).join("/"));
    return [rel, typeof content === "string" ? enc.encode(content) : content] as const;
  });
  for (const d of [...dirs].sort()) entry(d, 0o040755, new Uint8Array());
  for (const [rel, data] of entries) {
    entry(rel, rel.endsWith(".sh") || rel === "init" ? 0o100755 : 0o100644, data);
  }
  entry("TRAILER!!!", 0, new Uint8Array());
  const out = new Uint8Array(length);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Arguments every qemu run of these tests starts with: TCG (KVM is not dependable on the CI
 * machines), one CPU, no default devices, no display, the serial port on qemu's stdio (where
 * runQemu collects it), and an exit instead of a reboot.
 */
export const QEMU_BASE_ARGS: readonly string[] = [
  "-accel",
  "tcg",
  "-smp",
  "1",
  "-nodefaults",
  "-no-user-config",
  "-display",
  "none",
  "-monitor",
  "none",
  "-serial",
  "stdio",
  "-no-reboot",
];

/** Options for runQemu. */
export interface QemuRunOptions {
  /** Whole budget; qemu is killed (by PID) when it runs out. */
  timeoutMs: number;
  /** Called with console output as it arrives. */
  onOutput?: (text: string) => void;
  /** Called once qemu runs, with a function that types a line on its serial console. */
  onStart?: (sendLine: (line: string) => Promise<void>) => void;
  /**
   * Looked at with all the output so far whenever more arrives; qemu is stopped as soon as it
   * returns true (the run's outcome is known, e.g. a firmware's final error message).
   */
  stopWhen?: (output: string) => boolean;
}

/** What one qemu run produced. */
export interface QemuRun {
  /** Everything qemu wrote: the serial console, then its own messages on stderr. */
  output: string;
  status: Deno.CommandStatus;
  /** True when qemu was killed because timeoutMs ran out. */
  timedOut: boolean;
  /** True when qemu was stopped because stopWhen said so. */
  stopped: boolean;
  durationMs: number;
}

/**
 * Runs `qemu-system-x86_64 args...` inside `netns` (start `args` with QEMU_BASE_ARGS) until it
 * exits, `timeoutMs` runs out or `stopWhen` holds; qemu is stopped by its PID.
 */
export async function runQemu(
  netns: string,
  args: readonly string[],
  opts: QemuRunOptions,
): Promise<QemuRun> {
  const started = performance.now();
  let output = "";
  let timedOut = false;
  let stopped = false;
  const qemu = spawnInNamespace(netns, "qemu-system-x86_64", [...args], {
    onOutput: (t) => {
      output += t;
      opts.onOutput?.(t);
      if (!stopped && opts.stopWhen?.(output)) {
        stopped = true;
        qemu.stop(0);
      }
    },
    stdin: opts.onStart !== undefined,
  });
  opts.onStart?.((line) => {
    if (!/^[A-Za-z0-9_ .-]*$/.test(line)) throw new Error(`bad line for the guest: ${line}`);
    return qemu.write(line + "\n");
  });
  const timer = setTimeout(() => {
    timedOut = true;
    qemu.stop(0);
  }, opts.timeoutMs);
  let status: Deno.CommandStatus;
  try {
    status = await qemu.status;
  } finally {
    clearTimeout(timer);
  }
  return {
    output,
    status,
    timedOut,
    stopped,
    durationMs: Math.round(performance.now() - started),
  };
}

function randomMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0] & 0xfc) | 0x02; // unicast, locally administered
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/**
 * Boots the prepared guest on `tap` inside `netns`, runs `guestScript` in it, and returns the
 * console output and parsed markers. Never throws for guest failures (look at exitCode,
 * timedOut, guestErrors); throws only when the guest is not prepared or qemu cannot start.
 */
export async function runGuest(opts: RunGuestOptions): Promise<GuestRun> {
  const guest = loadPreparedGuest();
  if (!guest) throw new Error("kernel guest not prepared: run scripts/kernel-initiator/prepare.sh");
  const started = performance.now();

  // The kernel unpacks concatenated cpio archives in order, later files overriding earlier
  // ones; prepare.sh pads the base image so this archive starts 4-byte aligned. The guest's
  // /init and helpers come from this checkout, so that a guest prepared before a change to
  // them runs the current ones.
  const guestDir = join(REPO_ROOT, "scripts", "kernel-initiator", "guest");
  const overlay = buildCpio({
    "/init": await Deno.readFile(join(guestDir, "init")),
    "/lib/guest-lib.sh": await Deno.readFile(join(guestDir, "guest-lib.sh")),
    ...opts.files,
    "/guest/script.sh": opts.guestScript,
  });
  const base = await Deno.readFile(guest.initrd);
  if (base.length % 4 !== 0) throw new Error(`${guest.initrd} is not padded: rerun prepare.sh`);
  const initrd = await Deno.makeTempFile({ prefix: "ggaoed-initrd-" });
  let output: string;
  let timedOut: boolean;
  try {
    const combined = new Uint8Array(base.length + overlay.length);
    combined.set(base, 0);
    combined.set(overlay, base.length);
    await Deno.writeFile(initrd, combined);

    const append = [
      "console=ttyS0",
      "panic=-1", // a guest panic reboots, and -no-reboot turns that into qemu exiting
      "loglevel=4", // keeps info-level kernel chatter from interleaving with markers
      `ggaoed.mtu=${opts.mtu}`,
      `ggaoed.nics=${1 + (opts.extraTaps?.length ?? 0)}`,
    ];
    if (opts.aoeParams?.length) {
      for (const p of opts.aoeParams) {
        if (!/^[a-z_]+=[A-Za-z0-9_.:-]+$/.test(p)) throw new Error(`bad aoe param ${p}`);
      }
      append.push(`ggaoed.aoe=${opts.aoeParams.join(",")}`);
    }
    const qemuArgs = [
      ...QEMU_BASE_ARGS,
      "-m",
      String(opts.memoryMiB ?? 512),
      "-kernel",
      guest.vmlinuz,
      "-initrd",
      initrd,
      "-append",
      append.join(" "),
      "-netdev",
      `tap,id=n0,ifname=${opts.tap},script=no,downscript=no`,
      "-device",
      `virtio-net-pci,netdev=n0,mac=${opts.mac ?? randomMac()}`,
    ];
    (opts.extraTaps ?? []).forEach((tap, i) => {
      qemuArgs.push(
        "-netdev",
        `tap,id=n${i + 1},ifname=${tap},script=no,downscript=no`,
        "-device",
        `virtio-net-pci,netdev=n${i + 1},mac=${randomMac()}`,
      );
    });
    const qemu = await runQemu(opts.netns, qemuArgs, opts);
    output = qemu.output;
    timedOut = qemu.timedOut;
  } finally {
    await Deno.remove(initrd).catch(() => {});
  }
  return {
    output,
    timedOut,
    durationMs: Math.round(performance.now() - started),
    ...parseMarkers(output),
  };
}
