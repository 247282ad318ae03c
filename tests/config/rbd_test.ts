/**
 * Ceph RBD devices in the configuration: `path = "rbd:POOL/IMAGE[@SNAP]"`, `ceph-conf`,
 * `ceph-user`, `ceph-options` in [defaults] and per device, in TOML and INI.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../../src/config/load.ts";
import { ConfigError, DEFAULTS } from "../../src/config/types.ts";
import { convertIniToToml } from "../../src/config/convert.ts";

const OPTIONS = { hostname: "storage1" };

function withStateDir(fn: (state: string) => void): () => void {
  return () => {
    const dir = Deno.makeTempDirSync({ prefix: "ggaoed-rbd-config-" });
    try {
      fn(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

function issues(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  assert.fail("no ConfigError");
}

Deno.test(
  "an rbd: path names pool, image and snapshot; the cluster settings default to /etc/ceph/ceph.conf and admin; nothing is looked up on disk",
  withStateDir((state) => {
    const c = parseConfigText(
      `[defaults]
state-directory = "${state}"

[devices.head]
path = "rbd:rbd/vm-disk-1"
shelf = 1
slot = 1

[devices.frozen]
path = "rbd:ssd/vm-disk-1@before-upgrade"
shelf = 1
slot = 2
`,
      "test.conf",
      OPTIONS, // filesystem checks on: an rbd: path is not a file
    );
    const [head, frozen] = c.devices;
    assert.deepEqual(head.rbd, {
      pool: "rbd",
      image: "vm-disk-1",
      snapshot: null,
      conf: DEFAULTS.cephConf,
      user: DEFAULTS.cephUser,
      options: {},
      fence: true,
      fenceAfter: 2.5,
    });
    assert.equal(head.path, "rbd:rbd/vm-disk-1");
    assert.equal(head.readOnly, false);
    assert.equal(frozen.rbd?.pool, "ssd");
    assert.equal(frozen.rbd?.snapshot, "before-upgrade");
    assert.equal(frozen.readOnly, true, "a snapshot is served read-only");
    assert.equal(DEFAULTS.cephConf, "/etc/ceph/ceph.conf");
    assert.equal(DEFAULTS.cephUser, "admin");
  }),
);

Deno.test(
  "ceph-options in [defaults] and in a device merge (the device's win); a table, a list or a string of NAME=VALUE",
  withStateDir((state) => {
    const c = parseConfigText(
      `[defaults]
state-directory = "${state}"
ceph-conf = "/etc/ceph/prod.conf"
ceph-user = "ggaoed"
ceph-options = { keyring = "/etc/ceph/ceph.client.ggaoed.keyring", rados_osd_op_timeout = 10 }

[devices.a]
path = "rbd:rbd/a"
shelf = 1
slot = 1
ceph-options = { rados_osd_op_timeout = "3", rbd_cache = false }

[devices.b]
path = "rbd:rbd/b"
shelf = 1
slot = 2
ceph-user = "client.other"
ceph-options = ["rados_mon_op_timeout=7", "ms_type = async+posix"]

[devices.c]
path = "rbd:rbd/c"
shelf = 1
slot = 3
ceph-conf = "/etc/ceph/other.conf"
ceph-options = "client_mount_timeout=2, debug_rbd=0/5"
`,
      "test.conf",
      OPTIONS,
    );
    const [a, b, cc] = c.devices.map((d) => d.rbd!);
    assert.deepEqual(a, {
      pool: "rbd",
      image: "a",
      snapshot: null,
      conf: "/etc/ceph/prod.conf",
      user: "ggaoed",
      options: {
        keyring: "/etc/ceph/ceph.client.ggaoed.keyring",
        rados_osd_op_timeout: "3",
        rbd_cache: "false",
      },
      fence: true,
      fenceAfter: 2.5,
    });
    assert.equal(b.user, "client.other");
    assert.deepEqual(b.options, {
      keyring: "/etc/ceph/ceph.client.ggaoed.keyring",
      rados_osd_op_timeout: "10",
      rados_mon_op_timeout: "7",
      ms_type: "async+posix",
    });
    assert.equal(cc.conf, "/etc/ceph/other.conf");
    assert.equal(cc.options.client_mount_timeout, "2");
    assert.equal(cc.options.debug_rbd, "0/5");
  }),
);

Deno.test(
  "a bad rbd: path and bad ceph-options are reported with file, key and fix, all at once",
  withStateDir((state) => {
    const e = issues(() =>
      parseConfigText(
        `[defaults]
state-directory = "${state}"
ceph-options = { keyring = ["a"] }

[devices.x]
path = "rbd:just-an-image"
shelf = 1
slot = 1

[devices.y]
path = "rbd:rbd/y"
shelf = 1
slot = 2
ceph-options = ["keyring"]
`,
        "test.conf",
        OPTIONS,
      )
    );
    const byKey = new Map(e.issues.map((i) => [i.key, i]));
    assert.equal(e.issues.length, 3, e.message);
    assert.match(byKey.get("defaults.ceph-options")!.message, /keyring: expected a string/);
    const x = byKey.get("devices.x.path")!;
    assert.equal(x.file, "test.conf");
    assert.match(x.message, /"rbd:just-an-image" is not an RBD image/);
    assert.match(x.fix, /rbd:POOL\/IMAGE.*rbd:POOL\/IMAGE@SNAP/);
    assert.match(byKey.get("devices.y.ceph-options")!.message, /"keyring" is not NAME=VALUE/);
  }),
);

Deno.test(
  "ceph keys on a device that is not an RBD image are warned about and ignored",
  withStateDir((state) => {
    const disk = `${state}/disk.img`;
    Deno.writeFileSync(disk, new Uint8Array(4096));
    const c = parseConfigText(
      `[defaults]
state-directory = "${state}"
ceph-user = "fine-here"

[devices.file]
path = "${disk}"
shelf = 1
slot = 1
ceph-user = "ggaoed"
admin = []
`,
      "test.conf",
      OPTIONS,
    );
    assert.equal(c.devices[0].rbd, null);
    assert.deepEqual(c.warnings.filter((w) => w.includes("ceph")), [
      "test.conf: devices.file.ceph-user: ignored: the device is not a Ceph RBD image " +
      '(path = "rbd:POOL/IMAGE")',
    ]);
  }),
);

Deno.test(
  "the original INI format takes the same keys; convert-config turns ceph-options into a TOML list",
  withStateDir((state) => {
    const ini = `[defaults]
state-directory = ${state}
ceph-conf = /etc/ceph/ceph.conf
ceph-options = keyring=/etc/ceph/k, rados_osd_op_timeout=8

[vm1]
shelf = 2
slot = 3
path = rbd:rbd/vm1
`;
    const c = parseConfigText(ini, "old.conf", OPTIONS);
    assert.equal(c.format, "ini");
    assert.deepEqual(c.devices[0].rbd?.options, {
      keyring: "/etc/ceph/k",
      rados_osd_op_timeout: "8",
    });
    const toml = convertIniToToml(ini, "old.conf");
    assert.match(toml, /^ceph-options = \["keyring=\/etc\/ceph\/k", "rados_osd_op_timeout=8"\]$/m);
    const again = parseConfigText(toml, "new.conf", OPTIONS);
    assert.deepEqual(again.devices[0].rbd, c.devices[0].rbd);
  }),
);

Deno.test(
  "fence and fence-after: on after 2.5 s by default, set in [defaults] or per device; out of range is an error",
  withStateDir((state) => {
    const c = parseConfigText(
      `[defaults]
state-directory = "${state}"
fence-after = 3

[devices.a]
path = "rbd:rbd/a"
shelf = 1
slot = 1

[devices.b]
path = "rbd:rbd/b"
shelf = 1
slot = 2
fence = false
fence-after = 10.5
`,
      "test.conf",
      OPTIONS,
    );
    const [a, b] = c.devices.map((d) => d.rbd!);
    assert.equal(a.fence, true);
    assert.equal(a.fenceAfter, 3);
    assert.equal(b.fence, false);
    assert.equal(b.fenceAfter, 10.5);
    const bare = parseConfigText(
      `[defaults]\nstate-directory = "${state}"\n\n[devices.a]\npath = "rbd:rbd/a"\nshelf = 1\nslot = 1\n`,
      "test.conf",
      OPTIONS,
    );
    assert.equal(bare.devices[0].rbd!.fence, true);
    assert.equal(bare.devices[0].rbd!.fenceAfter, 2.5);
    const e = issues(() =>
      parseConfigText(
        `[defaults]
state-directory = "${state}"
fence-after = 1

[devices.a]
path = "rbd:rbd/a"
shelf = 1
slot = 1
fence-after = 601
`,
        "test.conf",
        OPTIONS,
      )
    );
    const byKey = new Map(e.issues.map((i) => [i.key, i]));
    assert.equal(e.issues.length, 2, e.message);
    assert.match(byKey.get("defaults.fence-after")!.message, /2-600 seconds/);
    assert.match(byKey.get("devices.a.fence-after")!.message, /2-600 seconds/);
    assert.match(byKey.get("devices.a.fence-after")!.fix, /aoe_deadsecs/);
  }),
);

Deno.test(
  "views of an RBD snapshot: the device is writable (each host writes its own clone), the views pool is kept; without views a snapshot stays read-only",
  withStateDir((state) => {
    const c = parseConfigText(
      `[defaults]
state-directory = "${state}"

[devices.farm]
path = "rbd:rbd/golden@v1"
shelf = 1
slot = 1
views = "rbd:clones"

[devices.frozen]
path = "rbd:rbd/golden@v1"
shelf = 1
slot = 2
`,
      "test.conf",
      OPTIONS,
    );
    const [farm, frozen] = c.devices;
    assert.equal(farm.readOnly, false, "writes go to the hosts' clones");
    assert.equal(farm.views?.location, "rbd:clones");
    assert.equal(farm.rbd?.snapshot, "v1");
    assert.equal(frozen.readOnly, true);
    assert.equal(frozen.views, null);
  }),
);
