import assert from "node:assert/strict";
import { Errno, errnoCode, SysError, sysError } from "../../ffi/errno.ts";
import { openStorage } from "../../ffi/storage.ts";

Deno.test("opening a missing file throws an ENOENT SysError naming the call and the path", () => {
  const path = `/var/tmp/ggaoed-missing-${Deno.pid}-${Date.now()}`;
  assert.throws(
    () => openStorage(path, { readOnly: true, direct: false, exclusive: false }),
    (e: unknown) => {
      assert.ok(e instanceof SysError);
      assert.equal(e.errno, Errno.ENOENT);
      assert.equal(e.code, "ENOENT");
      assert.equal(e.call, `stat(${path})`);
      assert.match(
        e.message,
        new RegExp(`^stat\\(${path}\\): ENOENT \\(No such file or directory\\)`),
      );
      return true;
    },
  );
});

Deno.test("a SysError message carries the call's own advice over the generic one", () => {
  const e = sysError("socket(AF_PACKET)", Errno.EPERM, {
    EPERM: "run as root or grant CAP_NET_RAW",
  });
  assert.equal(
    e.message,
    "socket(AF_PACKET): EPERM (Operation not permitted) — run as root or grant CAP_NET_RAW",
  );
  const generic = sysError("kill", Errno.EPERM);
  assert.match(generic.message, /^kill: EPERM \(Operation not permitted\) — run as root/);
});

Deno.test("errno numbers map to their Linux names, unknown ones to E<n>", () => {
  assert.equal(errnoCode(11), "EAGAIN");
  assert.equal(errnoCode(16), "EBUSY");
  assert.equal(errnoCode(105), "ENOBUFS");
  assert.equal(errnoCode(4095), "E4095");
});
