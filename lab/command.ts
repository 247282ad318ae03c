/**
 * Running programs from tests: to completion with their output collected ({@link run}),
 * stopping one started with `Deno.Command(...).spawn()` ({@link stopProcess}), and freezing one
 * with SIGSTOP until every thread of it is stopped ({@link freezeProcess}). Every run is
 * bounded in time; processes are signalled by PID, never by name.
 *
 * @module
 */

/** Output of a finished command. */
export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** How {@link run} runs a command. */
export interface RunOptions {
  /** Throw when it exits with a status other than 0 (default true). */
  check?: boolean;
  /** Kill it after this long (default 60 s). */
  timeoutMs?: number;
  /** Variables added to its environment. */
  env?: Record<string, string>;
}

/**
 * Runs `args` (a program and its arguments, no shell) to completion with stdin closed. With
 * `check` (the default) a failure throws, with the command, how it ended and its output's tail.
 */
export async function run(args: string[], options: RunOptions = {}): Promise<Output> {
  const out = await new Deno.Command(args[0], {
    args: args.slice(1),
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
  }).output();
  const d = new TextDecoder();
  const result = { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
  if ((options.check ?? true) && result.code !== 0) {
    const how = out.signal
      ? `was killed by ${out.signal} (time bound?)`
      : `exited with ${out.code}`;
    const stdout = result.stdout.trim();
    throw new Error(
      `${args.join(" ")} ${how}: ${result.stderr.trim().slice(-3000)}` +
        (stdout ? `\n${stdout.slice(-2000)}` : ""),
    );
  }
  return result;
}

/** An output for an assertion message: exit status, stdout and stderr. */
export function show(o: Output): string {
  return `exit ${o.code}\nstdout: ${o.stdout}\nstderr: ${o.stderr}`;
}

/** Whether `command` is on PATH. */
export async function have(command: string): Promise<boolean> {
  return (await run(["sh", "-c", `command -v ${command}`], { check: false })).code === 0;
}

/**
 * Stops `child`: sends `signal` (null when the caller already asked it to end, e.g. by closing
 * its stdin), SIGKILL if it has not exited after `killAfterMs`; resolves with its exit status.
 */
export async function stopProcess(
  child: Deno.ChildProcess,
  signal: Deno.Signal | null,
  killAfterMs: number,
): Promise<Deno.CommandStatus> {
  if (signal !== null) {
    try {
      child.kill(signal);
    } catch { /* already exited */ }
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, killAfterMs);
  try {
    return await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Freezes process `pid` (`what`, for the error) with SIGSTOP and waits until every one of its
 * threads is stopped: the signal reaches each thread on its way back to user space. Throws
 * after `timeoutMs`.
 */
export async function freezeProcess(pid: number, what: string, timeoutMs: number): Promise<void> {
  Deno.kill(pid, "SIGSTOP");
  const deadline = performance.now() + timeoutMs;
  while (!allThreadsStopped(pid)) {
    if (performance.now() > deadline) throw new Error(`${what} did not stop`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Whether every thread of `pid` is in state T (stopped), per /proc/PID/task/TID/stat. */
export function allThreadsStopped(pid: number): boolean {
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/stat`);
      // "tid (comm) S ...": the state follows the last ')'.
      if (stat[stat.lastIndexOf(")") + 2] !== "T") return false;
    } catch {
      // The thread exited meanwhile.
    }
  }
  return true;
}
