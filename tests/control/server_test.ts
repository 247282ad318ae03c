import assert from "node:assert/strict";
import {
  ControlClient,
  ControlConnectError,
  ControlRequestError,
} from "../../src/control/client.ts";
import { LineReader, writeAll } from "../../src/control/lines.ts";
import {
  type ControlServerOptions,
  ControlSocketError,
  startControlServer,
} from "../../src/control/server.ts";
import { MAX_REQUEST_BYTES } from "../../src/control/types.ts";
import { DS, IS } from "../../src/stats.ts";
import { VERSION } from "../../src/version.ts";
import { TestHandler } from "./handler.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Runs `fn` with a server on a socket in a fresh directory; cleans up afterwards. */
async function withServer(
  fn: (ctx: { path: string; handler: TestHandler; logs: string[] }) => Promise<void>,
  options: ControlServerOptions = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-ctl-" });
  const path = `${dir}/ggaoed.sock`;
  const handler = new TestHandler(["disk1", "disk2", "other"], ["eth0"]);
  const logs: string[] = [];
  const server = await startControlServer(
    path,
    handler,
    (l, m) => logs.push(`${l}: ${m}`),
    options,
  );
  try {
    await fn({ path, handler, logs });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A raw connection speaking lines, to send what ControlClient never would. */
async function rawConnect(path: string) {
  const conn = await Deno.connect({ transport: "unix", path });
  const reader = new LineReader(conn, 1 << 20);
  return {
    conn,
    send: (text: string) => writeAll(conn, encoder.encode(text)),
    async receive(): Promise<Record<string, unknown> | null> {
      const line = await reader.next();
      return line === null ? null : JSON.parse(decoder.decode(line));
    },
  };
}

Deno.test("the control socket is mode 0600 and is removed when the server closes", async () => {
  let socketPath = "";
  await withServer(async ({ path }) => {
    socketPath = path;
    const info = await Deno.lstat(path);
    assert.ok(info.isSocket);
    assert.equal(info.mode! & 0o777, 0o600);
  });
  await assert.rejects(Deno.lstat(socketPath), Deno.errors.NotFound);
});

Deno.test("hello answers the protocol and daemon version; requests follow on one connection", async () => {
  await withServer(async ({ path, handler }) => {
    handler.clock = 42.5;
    handler.device("disk2").stats[DS.write_cnt] = 7;
    handler.interfaces[0].stats[IS.rx_cnt] = 9;
    const client = await ControlClient.connect(path);
    try {
      assert.equal(client.version, VERSION);
      const all = await client.request("stats");
      assert.equal(all.uptime, 42.5);
      assert.deepEqual(all.devices.map((d) => d.name), ["disk1", "disk2", "other"]);
      assert.equal(all.devices[1].stats.write_cnt, 7);
      assert.equal(all.interfaces[0].stats.rx_cnt, 9);
      const some = await client.request("stats", { patterns: ["disk?", "eth*"] });
      assert.deepEqual(some.devices.map((d) => d.name), ["disk1", "disk2"]);
      assert.deepEqual(some.interfaces.map((d) => d.name), ["eth0"]);
    } finally {
      client.close();
    }
  });
});

Deno.test("malformed JSON gets an error answer and a closed connection; others keep being served", async () => {
  await withServer(async ({ path, logs }) => {
    const good = await ControlClient.connect(path);
    const bad = await rawConnect(path);
    try {
      await bad.send('{"hello":1}\n');
      assert.equal((await bad.receive())?.hello, 1);
      await bad.send("{not json\n");
      const answer = await bad.receive();
      assert.equal(answer?.ok, false);
      assert.match(String(answer?.error), /malformed request/);
      assert.equal(await bad.receive(), null, "the server closes the connection");
      assert.ok(logs.some((l) => l.startsWith("warning: Ctl: malformed request")));
      // The client connected before, and one connecting after, are both served.
      assert.equal((await good.request("stats")).devices.length, 3);
      const later = await ControlClient.connect(path);
      assert.equal((await later.request("stats")).devices.length, 3);
      later.close();
    } finally {
      good.close();
      bad.conn.close();
    }
  });
});

Deno.test("a request over 64 KiB gets an error answer and the connection is closed", async () => {
  await withServer(async ({ path }) => {
    const raw = await rawConnect(path);
    try {
      await raw.send('{"hello":1}\n');
      await raw.receive();
      const huge = JSON.stringify({ cmd: "stats", patterns: ["x".repeat(MAX_REQUEST_BYTES)] });
      // The server answers as soon as the bound is passed, without waiting for the rest.
      raw.send(huge + "\n").catch(() => {});
      const answer = await raw.receive();
      assert.equal(answer?.ok, false);
      assert.match(String(answer?.error), /longer than 65536 bytes/);
      assert.equal(await raw.receive(), null);
    } finally {
      raw.conn.close();
    }
  });
});

Deno.test("a request before the hello is refused and the connection closed", async () => {
  await withServer(async ({ path }) => {
    const raw = await rawConnect(path);
    try {
      await raw.send('{"cmd":"stats"}\n');
      const answer = await raw.receive();
      assert.equal(answer?.ok, false);
      assert.match(String(answer?.error), /hello/);
      assert.equal(await raw.receive(), null);
    } finally {
      raw.conn.close();
    }
  });
});

Deno.test("an unknown command or bad patterns get an error answer and the connection stays", async () => {
  await withServer(async ({ path }) => {
    const raw = await rawConnect(path);
    try {
      await raw.send('{"hello":1}\n{"cmd":"format-disk"}\n{"cmd":"stats","patterns":[1]}\n');
      await raw.receive();
      assert.deepEqual(await raw.receive(), {
        ok: false,
        error: 'unknown command "format-disk"',
      });
      assert.deepEqual(await raw.receive(), {
        ok: false,
        error: "patterns must be a list of strings",
      });
      await raw.send('{"cmd":"clear-stats"}\n');
      assert.deepEqual(await raw.receive(), { ok: true });
    } finally {
      raw.conn.close();
    }
  });
});

Deno.test("show and clear requests act on the devices whose names match the globs", async () => {
  await withServer(async ({ path, handler }) => {
    handler.device("disk1").state.setConfig(encoder.encode("hello"));
    handler.device("disk1").state.addMask(0x001b210aaa22);
    handler.device("disk2").state.setReserve([0x0a0b0c0d0e0f, 1]);
    const client = await ControlClient.connect(path);
    try {
      assert.deepEqual(await client.request("show-config", { patterns: ["disk1"] }), {
        ok: true,
        devices: [{ name: "disk1", config: "68656c6c6f" }],
      });
      const mask = await client.request("show-macmask", { patterns: ["disk*"] });
      assert.deepEqual(mask.devices, [
        { name: "disk1", macs: ["00:1b:21:0a:aa:22"] },
        { name: "disk2", macs: [] },
      ]);
      const reserve = await client.request("show-reserve", { patterns: ["disk2"] });
      assert.deepEqual(reserve.devices, [
        { name: "disk2", macs: ["00:00:00:00:00:01", "0a:0b:0c:0d:0e:0f"] },
      ]);
      assert.deepEqual(await client.request("clear-reserve", { patterns: ["d*"] }), {
        ok: true,
        cleared: ["disk1", "disk2"],
      });
      assert.deepEqual(handler.device("disk2").state.reserve, []);
      assert.deepEqual(await client.request("clear-config", { patterns: ["nomatch"] }), {
        ok: true,
        cleared: [],
      });
      assert.equal(handler.device("disk1").state.configLength, 5);
      await assert.rejects(client.request("clear-macmask"), ControlRequestError);
      assert.deepEqual(handler.device("disk1").state.macMask, [0x001b210aaa22]);
    } finally {
      client.close();
    }
  });
});

Deno.test("a failed reload or a handler that throws answers an error, and the connection stays", async () => {
  await withServer(async ({ path, handler }) => {
    handler.reloadResult = { ok: false, message: "The config file contains errors, not reloading" };
    handler.deviceStates = () => Promise.reject(new Error("worker gone"));
    const client = await ControlClient.connect(path);
    try {
      await assert.rejects(client.request("reload"), {
        name: "ControlRequestError",
        message: "The config file contains errors, not reloading",
      });
      await assert.rejects(client.request("show-config"), {
        message: "show-config failed: worker gone",
      });
      assert.equal((await client.request("stats")).devices.length, 3);
    } finally {
      client.close();
    }
  });
});

Deno.test("a stuck client blocks nobody and is dropped after the idle timeout", async () => {
  await withServer(async ({ path }) => {
    const stuck = await rawConnect(path);
    const silent = await rawConnect(path);
    try {
      await stuck.send('{"hello":1}\n{"cmd":"sta'); // half a request, then nothing
      await stuck.receive();
      const client = await ControlClient.connect(path);
      assert.equal((await client.request("stats")).devices.length, 3);
      client.close();
      // The half-sent request and the silent connection are both closed by the server.
      assert.equal(await stuck.receive(), null);
      assert.equal(await silent.receive(), null);
    } finally {
      stuck.conn.close();
      silent.conn.close();
    }
  }, { idleTimeoutMs: 300, requestTimeoutMs: 300 });
});

Deno.test("connections over the limit are answered with an error, not left hanging", async () => {
  await withServer(async ({ path }) => {
    const first = await ControlClient.connect(path);
    try {
      const second = await rawConnect(path);
      const answer = await second.receive();
      assert.equal(answer?.ok, false);
      assert.match(String(answer?.error), /too many control connections/);
      second.conn.close();
      assert.equal((await first.request("stats")).devices.length, 3);
    } finally {
      first.close();
    }
  }, { maxConnections: 1 });
});

Deno.test("a stale socket file left by a dead daemon is replaced", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-ctl-" });
  const path = `${dir}/ggaoed.sock`;
  try {
    // A socket file nobody listens on, as a killed daemon leaves it. (Deno removes the path it
    // bound when the listener closes, so bind elsewhere and move the file.)
    const listener = Deno.listen({ transport: "unix", path: `${dir}/bound` });
    await Deno.rename(`${dir}/bound`, path);
    listener.close();
    assert.ok((await Deno.lstat(path)).isSocket);
    const logs: string[] = [];
    const server = await startControlServer(path, new TestHandler([], []), (l, m) => {
      logs.push(`${l}: ${m}`);
    });
    try {
      const client = await ControlClient.connect(path);
      client.close();
      assert.ok(logs.includes(`info: Ctl: removing stale control socket ${path}`));
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a live control socket is not stolen by a second daemon", async () => {
  await withServer(async ({ path }) => {
    await assert.rejects(
      startControlServer(path, new TestHandler([], []), () => {}),
      (e: Error) => {
        assert.ok(e instanceof ControlSocketError);
        assert.equal(e.message, `another ggaoed is running (control socket ${path} answers)`);
        return true;
      },
    );
    const client = await ControlClient.connect(path);
    assert.equal((await client.request("stats")).devices.length, 3);
    client.close();
  });
});

Deno.test("a file at the socket path that is not a socket is left alone", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-ctl-" });
  const path = `${dir}/ggaoed.sock`;
  try {
    await Deno.writeTextFile(path, "precious");
    await assert.rejects(startControlServer(path, new TestHandler([], []), () => {}), {
      name: "ControlSocketError",
      message: `control socket ${path} exists and is not a socket — remove it or set another ` +
        "control-socket",
    });
    assert.equal(await Deno.readTextFile(path), "precious");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("connecting where no daemon listens says so, and what to do", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-ctl-" });
  try {
    await assert.rejects(ControlClient.connect(`${dir}/none.sock`), (e: Error) => {
      assert.ok(e instanceof ControlConnectError);
      assert.equal(
        e.message,
        `cannot reach ggaoed at ${dir}/none.sock: no such file — is the daemon running? ` +
          "(start it, or pass -c/-s)",
      );
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("close() does not wait for a request whose handler never answers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-ctl-" });
  const path = `${dir}/ggaoed.sock`;
  try {
    const handler = new TestHandler(["disk1"], []);
    let reloading = false;
    handler.reload = () => { // a worker that never replies
      reloading = true;
      return new Promise(() => {});
    };
    const server = await startControlServer(path, handler, () => {});
    const client = await ControlClient.connect(path);
    const pending = client.request("reload").catch((e) => e);
    // The request is with the handler before the server closes.
    const deadline = performance.now() + 10_000;
    while (!reloading) {
      assert.ok(performance.now() < deadline, "the reload request never reached the handler");
      await new Promise((r) => setTimeout(r, 5));
    }
    const started = performance.now();
    await server.close();
    assert.ok(performance.now() - started < 3000);
    assert.equal((await pending).name, "ControlProtocolError");
    client.close();
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
