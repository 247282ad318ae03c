/**
 * Per-host views in the configuration: `views`, `views-lifecycle`, `max-views`, `views-quiet`,
 * and the errors that name the file, the key and the fix.
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../../src/config/load.ts";
import { ConfigError, DEFAULTS } from "../../src/config/types.ts";

function withDir(fn: (dir: string) => void): () => void {
  return () => {
    const dir = Deno.makeTempDirSync({ prefix: "ggaoed-views-config-" });
    try {
      Deno.mkdirSync(`${dir}/state`);
      Deno.mkdirSync(`${dir}/views`);
      Deno.writeFileSync(`${dir}/golden.img`, new Uint8Array(65536));
      fn(dir);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  };
}

function load(dir: string, device: string) {
  return parseConfigText(
    `[defaults]\nstate-directory = "${dir}/state"\n\n[devices.farm]\nshelf = 1\nslot = 1\n${device}\n`,
    "farm.conf",
    { hostname: "storage1" },
  );
}

function issues(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  assert.fail("no ConfigError");
}

Deno.test(
  "views takes a directory; the lifecycle, the limit and the quiet time have their defaults",
  withDir((dir) => {
    const c = load(dir, `path = "${dir}/golden.img"\nviews = "${dir}/views"`);
    assert.deepEqual(c.devices[0].views, {
      location: `${dir}/views`,
      lifecycle: DEFAULTS.viewsLifecycle,
      maxViews: 64,
      quiet: 600,
    });
    const d = load(
      dir,
      `path = "${dir}/golden.img"\nviews = "${dir}/views"\nviews-lifecycle = "reset-on-discover"\nmax-views = 4096\nviews-quiet = 30`,
    ).devices[0];
    assert.deepEqual(d.views, {
      location: `${dir}/views`,
      lifecycle: "reset-on-discover",
      maxViews: 4096,
      quiet: 30,
    });
    assert.equal(load(dir, `path = "${dir}/golden.img"`).devices[0].views, null);
  }),
);

Deno.test(
  "views with read-only, a missing directory, a relative path, an RBD pool for a file and max-views out of range are errors naming file, key and fix",
  withDir((dir) => {
    const golden = `path = "${dir}/golden.img"`;
    assert.match(
      issues(() => load(dir, `${golden}\nviews = "${dir}/views"\nread-only = true`)),
      /farm\.conf: devices\.farm\.read-only: a device with views is written through its views .*\(remove read-only/,
    );
    assert.match(
      issues(() => load(dir, `${golden}\nviews = "${dir}/nowhere"`)),
      /farm\.conf: devices\.farm\.views: views directory .*nowhere: .*\(create it on the golden image's file system: mkdir -p /,
    );
    assert.match(
      issues(() => load(dir, `${golden}\nviews = "views"`)),
      /devices\.farm\.views: views is not an absolute path/,
    );
    assert.match(
      issues(() => load(dir, `${golden}\nviews = "rbd:rbd"`)),
      /devices\.farm\.views: views = "rbd:rbd" makes RBD clones, which need an RBD snapshot as the golden image.*\(serve a protected snapshot/,
    );
    assert.match(
      issues(() => load(dir, `path = "rbd:rbd/golden@v1"\nviews = "${dir}/views"`)),
      /devices\.farm\.views: the golden image is an RBD snapshot: its views are RBD clones.*\(write views = "rbd:rbd"/,
    );
    assert.match(
      issues(() => load(dir, `path = "rbd:rbd/golden"\nviews = "rbd:rbd"`)),
      /devices\.farm\.path: views are RBD clones, which are made of a snapshot.*rbd snap protect rbd\/golden@golden/,
    );
    assert.match(
      issues(() => load(dir, `${golden}\nviews = "${dir}/views"\nmax-views = 0`)),
      /devices\.farm\.max-views: .*1-4096/,
    );
    assert.match(
      issues(() => load(dir, `${golden}\nviews = "${dir}/views"\nviews-lifecycle = "never"`)),
      /devices\.farm\.views-lifecycle/,
    );
    // An RBD snapshot with an RBD pool for its clones is fine for the configuration.
    const rbd = load(dir, `path = "rbd:rbd/golden@v1"\nviews = "rbd:rbd"`).devices[0];
    assert.equal(rbd.views?.location, "rbd:rbd");
  }),
);

Deno.test(
  "a views directory on another file system than the golden image is an error (reflinks need one)",
  withDir((dir) => {
    // /dev/shm is a tmpfs: another file system than the temporary directory's, as a rule.
    if (Deno.statSync("/dev/shm").dev === Deno.statSync(dir).dev) return;
    const views = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "ggaoed-views-" });
    try {
      assert.match(
        issues(() => load(dir, `path = "${dir}/golden.img"\nviews = "${views}"`)),
        /devices\.farm\.views: views directory .* is on another file system than the golden image .*EXDEV.*\(put the views directory on the golden image's XFS or btrfs file system\)/,
      );
    } finally {
      Deno.removeSync(views, { recursive: true });
    }
  }),
);

Deno.test(
  "views-lifecycle, max-views and views-quiet without views are ignored with a warning",
  withDir((dir) => {
    const c = load(dir, `path = "${dir}/golden.img"\nmax-views = 3`);
    assert.equal(c.devices[0].views, null);
    assert.ok(
      c.warnings.some((w) => /devices\.farm\.max-views: ignored: the device has no views/.test(w)),
      c.warnings.join("\n"),
    );
  }),
);
