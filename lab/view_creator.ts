/**
 * A process that makes views until it is killed, for the tests of kill -9 during the creation of a
 * view (file views: tests/storage/file_views_test.ts; RBD clones: tests/rbd/clones_test.ts). The
 * child script calls {@link makeViewsForever} with its store; the test runs it with
 * {@link killedCreator}, which kills it -9 at a random moment (or, under strace, at its Nth
 * ioctl) and returns the views it reported made.
 *
 * @module
 */

/** In the child: prints `ready`, then makes views of fresh MACs, printing `made MAC` after each. */
export async function makeViewsForever(
  store: { ensure(mac: string): Promise<boolean> },
): Promise<never> {
  const encoder = new TextEncoder();
  Deno.stdout.writeSync(encoder.encode("ready\n"));
  for (;;) {
    const mac = [...crypto.getRandomValues(new Uint8Array(6))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    await store.ensure(mac);
    Deno.stdout.writeSync(encoder.encode(`made ${mac}\n`));
  }
}

/** How {@link killedCreator} kills the child. */
export type Kill =
  /** SIGKILL this long after the child said `ready`. */
  | { afterMs: number }
  /** strace kills it at its Nth ioctl (FICLONE being most of them). */
  | { atIoctl: number };

/**
 * Runs the Deno script `script` with `args` (a child that calls {@link makeViewsForever}), kills
 * it as `kill` says, and returns the MACs it reported made. Bounded: 30 s for the child to start
 * (or for strace to kill it).
 */
export async function killedCreator(script: string, args: string[], kill: Kill): Promise<string[]> {
  const deno = [Deno.execPath(), "run", "-A", script, ...args];
  const [command, ...rest] = "atIoctl" in kill
    ? [
      "strace",
      ...["-f", "-qq", "-o", "/dev/null", "-e", "trace=ioctl"],
      ...["-e", `inject=ioctl:signal=SIGKILL:when=${kill.atIoctl}`],
      ...deno,
    ]
    : deno;
  const child = new Deno.Command(command, {
    args: rest,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
  })();
  const errors = new Response(child.stderr).text();
  const made = () => [...out.matchAll(/^made ([0-9a-f]{12})$/gm)].map((m) => m[1]);
  if ("atIoctl" in kill) {
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    await child.status;
    clearTimeout(timer);
    await reading;
    await errors;
    return made();
  }
  let failure: unknown = null;
  try {
    const deadline = performance.now() + 30_000;
    while (!out.includes("ready\n")) {
      if (performance.now() > deadline) throw new Error(`the child did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, kill.afterMs));
  } catch (e) {
    failure = e;
  }
  child.kill("SIGKILL");
  const status = await child.status;
  await reading;
  const stderr = await errors;
  if (failure !== null) throw failure;
  if (status.signal !== "SIGKILL") throw new Error(`the child ended on its own:\n${stderr}`);
  return made();
}
