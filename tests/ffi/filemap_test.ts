/**
 * Copies out of a file mapping (ffi/filemap.ts): one call for a batch, exact bytes, and a page
 * that faults (past the end of a file truncated meanwhile) reported as a failed copy instead of
 * a SIGBUS that ends the process; a SIGBUS anywhere else still ends it.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { closeFd, FileMap, MapCopies, Memory, openStorage } from "../../ffi/mod.ts";

function withFile(bytes: number, fn: (path: string, fd: number) => void): void {
  const path = Deno.makeTempFileSync({ dir: "/var/tmp", prefix: "ggaoed-map-" });
  Deno.writeFileSync(path, new Uint8Array(bytes).map((_, i) => (i >> 9) * 7 + (i & 0xff)));
  const s = openStorage(path, { readOnly: false, direct: false, exclusive: false });
  try {
    fn(path, s.fd);
  } finally {
    closeFd(s.fd);
    Deno.removeSync(path);
  }
}

Deno.test("a batch of copies out of a mapping lands byte-exact at every destination", () => {
  withFile(1 << 20, (path, fd) => {
    const map = FileMap.open(fd, 1 << 20, path);
    const dst = Memory.allocate(64 * 4096);
    const copies = new MapCopies(64);
    try {
      const want: [number, number, number][] = [];
      for (let i = 0; i < 64; i++) {
        const offset = ((i * 37) % 250) * 4096 + (i % 3) * 512;
        const bytes = 512 * (1 + (i % 8));
        assertEquals(copies.add(map, offset, dst, i * 4096, bytes), i);
        want.push([offset, i * 4096, bytes]);
      }
      assertEquals(copies.add(map, 0, dst, 0, 512), -1, "the table is full");
      assertEquals(copies.run(), 0);
      const file = Deno.readFileSync(path);
      for (const [offset, at, bytes] of want) {
        assertEquals(dst.bytes.subarray(at, at + bytes), file.subarray(offset, offset + bytes));
      }
    } finally {
      map.close();
      dst.close();
    }
  });
});

Deno.test("copies from pages past the end of a truncated file fail and the process lives; the others land", () => {
  withFile(1 << 20, (path, fd) => {
    const map = FileMap.open(fd, 1 << 20, path);
    const dst = Memory.allocate(8 * 4096);
    const copies = new MapCopies(8);
    try {
      const before = Deno.readFileSync(path);
      Deno.truncateSync(path, 64 * 1024);
      copies.add(map, 0, dst, 0, 4096); // inside
      copies.add(map, 512 * 1024, dst, 4096, 4096); // past the end: SIGBUS caught
      copies.add(map, 60 * 1024, dst, 8192, 4096); // inside, after a fault
      copies.add(map, 64 * 1024 - 512, dst, 12288, 1024); // straddles the end
      copies.add(map, 1000 * 1024, dst, 16384, 512); // past the end again
      assertEquals(copies.run(), 3);
      assertEquals([0, 1, 2, 3, 4].map((i) => copies.faulted(i)), [false, true, false, true, true]);
      assertEquals(dst.bytes.subarray(0, 4096), before.subarray(0, 4096));
      assertEquals(dst.bytes.subarray(8192, 12288), before.subarray(60 * 1024, 64 * 1024));
    } finally {
      map.close();
      dst.close();
    }
  });
});

Deno.test("a SIGBUS outside the copy routine still ends the process", async () => {
  const script = `
    import { closeFd, FileMap, openStorage } from "${
    new URL("../../ffi/mod.ts", import.meta.url).href
  }";
    const path = Deno.args[0];
    const s = openStorage(path, { readOnly: false, direct: false, exclusive: false });
    const map = FileMap.open(s.fd, 1 << 20, path);   // installs the handler
    Deno.truncateSync(path, 4096);
    const p = Deno.UnsafePointer.create(BigInt(map.base + 512 * 1024));
    console.log("touching");
    console.log(new Deno.UnsafePointerView(p!).getUint8(0));   // not our copy: must die
    closeFd(s.fd);
  `;
  const path = Deno.makeTempFileSync({ dir: "/var/tmp", prefix: "ggaoed-map-" });
  try {
    Deno.writeFileSync(path, new Uint8Array(1 << 20));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--unstable-ffi", script, path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert(text.includes("touching"), text + new TextDecoder().decode(out.stderr));
    assertEquals(out.signal, "SIGBUS");
  } finally {
    Deno.removeSync(path);
  }
});
