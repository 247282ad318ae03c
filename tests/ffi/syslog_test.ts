import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { libc } from "../../ffi/libc.ts";
import { sockaddrUn, SyslogWriter } from "../../ffi/mod.ts";

Deno.test("syslog messages arrive on the socket as <PRI>ident[pid]: text, facility daemon", () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/log`;
  const server = libc().socket(1, 2, 0); // AF_UNIX, SOCK_DGRAM: a stand-in for /dev/log
  try {
    const addr = sockaddrUn(path);
    assertEquals(libc().bind(server, addr, addr.length), 0);
    const writer = SyslogWriter.open("ggaoed", path);
    writer.write("warning", "disk/d1: hello");
    writer.write("debug", "trace");
    const buf = new Uint8Array(new ArrayBuffer(512));
    const got: string[] = [];
    for (let i = 0; i < 2; i++) {
      const n = libc().recv(server, buf, 512n, 0);
      got.push(new TextDecoder().decode(buf.subarray(0, n)));
    }
    assertEquals(got, [
      `<28>ggaoed[${Deno.pid}]: disk/d1: hello`,
      `<31>ggaoed[${Deno.pid}]: trace`,
    ]);
    writer.close();
  } finally {
    libc().close(server);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("no syslog daemon: opening says so and how to log to stderr instead", () => {
  const err = assertThrows(() => SyslogWriter.open("ggaoed", "/nonexistent/log"));
  assertEquals(
    /connect\(\/nonexistent\/log\): ENOENT.*log-target = "stderr"/.test(String(err)),
    true,
  );
});
