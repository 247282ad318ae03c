/**
 * Loading and validating the configuration file (TOML, or the original's INI format).
 *
 * Everything wrong with a file is collected and thrown at once as a {@link ConfigError}; each
 * issue names the file, the dotted key and what to write instead. Built-in defaults always apply
 * (docs/decisions.md §1.3), list items are trimmed, and an `accept` list that resolves to nothing
 * is an error (§1.4).
 *
 * Format detection (docs/configuration.md): a file that parses as TOML is TOML, unless it also
 * reads as a GKeyFile and has top-level tables that TOML cannot mean (not `defaults`, `acls`,
 * `devices`, `interfaces` nor a misspelling of one, holding plain keys only: `[eth1]`,
 * `[disk1]`). A file that does not parse as TOML is INI when it reads as a GKeyFile. When it is
 * neither, the errors of the format it most resembles are reported: TOML if it has
 * `[devices.`/`[interfaces.`/`[[` headers or quoted, array or inline-table values; INI
 * otherwise.
 *
 * @module
 */

import {
  effectiveIds,
  parseImageSpec,
  type PathInfo,
  realPath,
  statPath,
  SysError,
} from "../../ffi/mod.ts";
import { parse as parseToml, TomlError } from "smol-toml";
import { AclResolver, type EthersTable, parseEthers } from "./acl.ts";
import { type KeyFileGroup, parseKeyFile } from "./gkeyfile.ts";
import { type ListenAddress, parseListenAddress } from "./listen.ts";
import {
  DEFAULTS_KEYS,
  DEVICE_KEYS,
  findKey,
  INTERFACE_KEYS,
  type KeySpec,
  MAX_EXPORT_SECTORS,
  suggest,
} from "./schema.ts";
import { IniSection, type Section, TomlSection } from "./sources.ts";
import {
  type Config,
  ConfigError,
  type ConfigIssue,
  DEFAULTS,
  type DeviceConfig,
  exportRangeProblem,
  type GlobalConfig,
  type InterfaceConfig,
  RBD_PATH_PREFIX,
  type RbdConfig,
  type ViewsConfig,
} from "./types.ts";

/** Where the loader looks outside the file; tests point these elsewhere. */
export interface LoadOptions {
  /** ethers(5) file for host-name ACL tokens; default `/etc/ethers`. */
  ethersFile?: string;
  /** Directory of `<uuid>` symlinks to device nodes; default `/dev/disk/by-uuid`. */
  uuidDirectory?: string;
  /**
   * Check the state directory (exists, directory, writable) and device paths (exist, block
   * device or regular file); default true.
   */
  checkFilesystem?: boolean;
  /** Host name in the default serial number `shelf.slot:hostname`; default `Deno.hostname()`. */
  hostname?: string;
}

/** Devices a repeated warning names one by one; beyond, one line sums them up. */
const WARN_EACH_UP_TO = 3;

/** Characters of the IDENTIFY serial number (ATA words 10-19). */
export const SERIAL_LENGTH = 20;

/**
 * vblade's serial number, `shelf.slot:hostname`, cut to the 20 characters IDENTIFY holds.
 * Characters outside printable ASCII show as '?' on the wire (identify.ts).
 */
export function defaultSerial(shelf: number, slot: number, hostname: string): string {
  return `${shelf}.${slot}:${hostname}`.slice(0, SERIAL_LENGTH);
}

function systemHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return ""; // no --allow-sys: vblade's serial when gethostname fails
  }
}

const TOP_LEVEL = ["defaults", "acls", "devices", "interfaces"];

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function errorReason(e: unknown): string {
  const code = e instanceof SysError ? e.code : "";
  if (e instanceof Deno.errors.NotFound || code === "ENOENT") return "no such file";
  if (e instanceof Deno.errors.PermissionDenied || code === "EACCES") return "permission denied";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  return e instanceof Error ? e.message : String(e);
}

/**
 * Reads and validates the configuration file at `path`. Throws {@link ConfigError} listing every
 * problem (an unreadable file is one too).
 */
export function loadConfig(path: string, options: LoadOptions = {}): Config {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (e) {
    throw new ConfigError([{
      file: path,
      key: "",
      message: `cannot read ${path}: ${errorReason(e)}`,
      fix: "create it from ggaoed.conf.dist, or pass -c FILE",
    }]);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError([{
      file: path,
      key: "",
      message: "the file is not valid UTF-8",
      fix: "save it as UTF-8 text",
    }]);
  }
  return parseConfigText(text, path, options);
}

/**
 * Validates a configuration given as the tables a TOML file parses to (`{ defaults: {...},
 * devices: { NAME: {...} } }`), named `file` in messages: `ggaoed export` builds its configuration
 * this way, so that it gets the checks, defaults and Config of a file.
 */
export function buildConfig(
  doc: Record<string, unknown>,
  file: string,
  options: LoadOptions = {},
): Config {
  return new Builder(file, options).fromToml(doc, "");
}

/** Validates configuration `text` read from `file` (named in messages). */
export function parseConfigText(text: string, file: string, options: LoadOptions = {}): Config {
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  const b = new Builder(file, options);
  let toml: Table | null = null;
  let tomlError: TomlError | null = null;
  try {
    toml = parseToml(text) as Table;
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    tomlError = e;
  }
  if (toml && !iniLikeTables(toml)) return b.fromToml(toml, text);
  const ini = parseKeyFile(text);
  const iniClean = ini.errors.length === 0 && ini.keyFile.groups.size > 0 &&
    ![...ini.keyFile.groups.keys()].some((g) => /^(devices|interfaces)\./.test(g));
  if (iniClean) return b.fromIni(ini.keyFile.groups.values());
  if (toml) return b.fromToml(toml, text);
  if (tomlError && looksLikeToml(text)) {
    b.issue(
      "",
      `not valid TOML: line ${tomlError.line}, column ${tomlError.column}: ${
        tomlError.message.replace(/^Invalid TOML document: /, "").split("\n")[0]
      }`,
      "see ggaoed.conf.dist for the syntax",
    );
  } else {
    for (const err of ini.errors) {
      b.issue("", `line ${err.line}: ${err.message}`, "fix the line or start it with #");
    }
    if (ini.errors.length === 0) {
      b.issue("", "neither TOML nor the original INI format", "start from ggaoed.conf.dist");
    }
  }
  throw new ConfigError(b.issues);
}

/**
 * True when a file that parses as TOML is more likely the original INI format: it has top-level
 * tables TOML cannot mean (`[eth1]`, `[disk1]`), none of them a misspelling of a known table,
 * all holding plain keys only.
 */
function iniLikeTables(doc: Table): boolean {
  const unknown = Object.keys(doc).filter((k) => !TOP_LEVEL.includes(k));
  return unknown.length > 0 && unknown.every((k) => {
    const v = doc[k];
    return isTable(v) && suggest(k, TOP_LEVEL) === null && !Object.values(v).some(isTable);
  });
}

function looksLikeToml(text: string): boolean {
  return /^\s*\[\s*(devices|interfaces)\s*\.|^\s*\[\[|^\s*[^#=\s][^=]*=\s*["'[{]/m.test(text);
}

/** Table names under `parent` in the order their headers appear (JS objects reorder `"1"`). */
function headerOrder(text: string, parent: string): string[] {
  const names: string[] = [];
  const re = new RegExp(
    String
      .raw`^[ \t]*\[[ \t]*${parent}[ \t]*\.[ \t]*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)[ \t]*\]`,
    "gm",
  );
  for (const m of text.matchAll(re)) {
    const raw = m[1];
    let name = raw;
    try {
      if (raw.startsWith('"')) name = JSON.parse(raw);
    } catch { /* an odd escape: ordering falls back to object order */ }
    if (raw.startsWith("'")) name = raw.slice(1, -1);
    if (!names.includes(name)) names.push(name);
  }
  return names;
}

function inFileOrder(keys: string[], order: string[]): string[] {
  const rank = (k: string) => {
    const i = order.indexOf(k);
    return i < 0 ? order.length : i;
  };
  return keys.map((k, i) => ({ k, i })).sort((a, b) => rank(a.k) - rank(b.k) || a.i - b.i).map((
    x,
  ) => x.k);
}

/** A kernel interface name (`dev_valid_name`): 1-15 bytes, no `/`, `:` or white space. */
function validInterfaceName(name: string): boolean {
  return name.length > 0 && name.length < 16 && name !== "." && name !== ".." &&
    !/[/:\s]/.test(name);
}

interface DeviceDefaults {
  queueLength: number;
  directIo: boolean;
  traceIo: boolean;
  maxDelay: number;
  mergeDelay: number;
  maxRequestAge: number;
  maxStall: number;
  syncWrites: boolean;
  /** `[defaults] admin`, resolved; null when unset (or unresolvable: then already an issue). */
  admin: number[] | null;
  adminConfigString: boolean;
  cephConf: string;
  cephUser: string;
  cephOptions: Record<string, string>;
  fence: boolean;
  fenceAfter: number;
}

/** Collects issues while turning sections into a Config. */
class Builder {
  readonly issues: ConfigIssue[] = [];
  readonly warnings: string[] = [];
  readonly #file: string;
  readonly #options: LoadOptions;
  #format: "toml" | "ini" = "toml";
  #ethers: { table: EthersTable | null; file: string; reason: string } | null = null;

  constructor(file: string, options: LoadOptions) {
    this.#file = file;
    this.#options = options;
  }

  issue(key: string, message: string, fix: string): void {
    this.issues.push({ file: this.#file, key, message, fix });
  }

  warn(key: string, message: string, fix: string): void {
    this.warnings.push(`${this.#file}: ${key ? key + ": " : ""}${message} (${fix})`);
  }

  /** An unknown name: an error in TOML (a typo must not disable something), a warning in INI. */
  #unknown(key: string, message: string, fix: string): void {
    if (this.#format === "toml") this.issue(key, message, fix);
    else this.warn(key, message + ", ignored", fix);
  }

  fromToml(doc: Table, text: string): Config {
    this.#format = "toml";
    const part = (name: string): Table | undefined => {
      const v = doc[name];
      if (v === undefined) return undefined;
      if (isTable(v)) return v;
      this.issue(name, `expected a table [${name}]`, `write [${name}] on a line of its own`);
      return undefined;
    };
    for (const key of Object.keys(doc)) {
      if (TOP_LEVEL.includes(key)) continue;
      const v = doc[key];
      const s = suggest(key, TOP_LEVEL);
      let fix: string;
      if (s) fix = `did you mean [${s}]?`;
      else if (isTable(v) && "shelf" in v) fix = `device tables are written [devices.${key}]`;
      else if (isTable(v)) fix = `interface tables are written [interfaces.${key}]`;
      else if (findKey(DEFAULTS_KEYS, key)) fix = `move ${key} into the [defaults] table`;
      else fix = `the tables are ${TOP_LEVEL.join(", ")}`;
      this.issue(key, `unknown top-level ${isTable(v) ? "table" : "key"}`, fix);
    }
    const defaults = part("defaults");
    const acls = part("acls");
    const children = (name: string): [string, Section][] => {
      const t = part(name);
      if (!t) return [];
      const out: [string, Section][] = [];
      for (const child of inFileOrder(Object.keys(t), headerOrder(text, name))) {
        const v = t[child];
        if (isTable(v)) out.push([child, new TomlSection(`${name}.${child}`, v)]);
        else {
          this.issue(
            `${name}.${child}`,
            "expected a table",
            `write [${name}.${child}] and its keys below it`,
          );
        }
      }
      return out;
    };
    return this.#build(
      defaults ? new TomlSection("defaults", defaults) : null,
      acls ? new TomlSection("acls", acls) : null,
      children("interfaces"),
      children("devices"),
    );
  }

  fromIni(groups: Iterable<KeyFileGroup>): Config {
    this.#format = "ini";
    this.warn(
      "",
      "this file is in the original ggaoed INI format",
      `convert it with: ggaoed convert-config ${this.#file} > ggaoed.conf.toml`,
    );
    let defaults: Section | null = null;
    let acls: Section | null = null;
    const interfaces: [string, Section][] = [];
    const devices: [string, Section][] = [];
    // The original's classification (docs/decisions.md §1.2): a group with `shelf` is a device.
    for (const group of groups) {
      const section = new IniSection(group);
      if (group.name === "defaults") defaults = section;
      else if (group.name === "acls") acls = section;
      else if (section.has("shelf")) devices.push([group.name, section]);
      else interfaces.push([group.name, section]);
    }
    return this.#build(defaults, acls, interfaces, devices);
  }

  /** Reads every key of `section` known to `specs`; reports unknown keys. */
  #readAll(section: Section, specs: readonly KeySpec[], unknownFix?: string): Map<string, unknown> {
    const out = new Map<string, unknown>();
    for (const key of section.keys()) {
      const spec = findKey(specs, key);
      const dotted = `${section.path}.${key}`;
      if (!spec) {
        const s = suggest(key, specs.map((k) => k.key));
        this.#unknown(
          dotted,
          "unknown key",
          s
            ? `did you mean ${s}?`
            : unknownFix ?? `known keys: ${specs.map((k) => k.key).join(", ")}`,
        );
        continue;
      }
      const v = this.#readKey(section, spec, dotted);
      if (v !== undefined) out.set(key, v);
    }
    return out;
  }

  #readKey(section: Section, spec: KeySpec, dotted: string): unknown {
    const key = spec.key;
    const range = (r: { ok: true; value: number }) => {
      if (spec.valid && !spec.valid(r.value)) {
        this.issue(dotted, `${r.value} is out of range ${spec.range}`, spec.fix ?? "");
        return undefined;
      }
      return r.value;
    };
    const fail = (r: { message: string; fix: string }) => {
      this.issue(dotted, r.message, r.fix);
      return undefined;
    };
    switch (spec.kind) {
      case "integer": {
        const r = section.integer(key);
        return r.ok ? range(r) : fail(r);
      }
      case "kib": {
        const r = section.integer(key);
        if (!r.ok) return fail(r);
        const v = range(r);
        return v === undefined ? undefined : v * 1024;
      }
      case "number": {
        const r = section.number(key);
        return r.ok ? range(r) : fail(r);
      }
      case "boolean": {
        const r = section.boolean(key);
        return r.ok ? r.value : fail(r);
      }
      case "string": {
        const r = section.string(key);
        if (!r.ok) return fail(r);
        if (r.value === "") {
          return fail({ message: "is empty", fix: `give a value or remove ${key}` });
        }
        return r.value;
      }
      case "patterns":
      case "tokens": {
        const r = section.list(key);
        return r.ok ? r.value : fail(r);
      }
      case "enum": {
        const r = section.string(key);
        if (!r.ok) return fail(r);
        const values = spec.values ?? [];
        if (values.includes(r.value)) return r.value;
        return fail({
          message: `${JSON.stringify(r.value)} is not one of ${values.join(", ")}`,
          fix: `write ${key} = "${suggest(r.value, values) ?? values[0]}"`,
        });
      }
      case "listen": {
        const r = section.string(key);
        if (!r.ok) return fail(r);
        const a = parseListenAddress(r.value, key);
        return a.ok ? a.value : fail(a);
      }
      case "options": {
        const r = section.options(key);
        return r.ok ? r.value : fail(r);
      }
      case "obsolete":
        this.warn(dotted, `${key} is obsolete and ignored`, spec.fix ?? "remove it");
        return undefined;
    }
  }

  #patterns(v: unknown, dotted: string): string[] | null {
    if (v === undefined) return null;
    const list = v as string[];
    if (list.length > 0) return list;
    // The original treats an empty pattern list as unset; keep that, but say so.
    this.warn(dotted, "empty list means every interface", "remove the key, or list patterns");
    return null;
  }

  #build(
    defaultsSection: Section | null,
    aclSection: Section | null,
    interfaceSections: [string, Section][],
    deviceSections: [string, Section][],
  ): Config {
    const d = defaultsSection ? this.#readAll(defaultsSection, DEFAULTS_KEYS) : new Map();
    const get = <T>(key: string, fallback: T): T => (d.has(key) ? d.get(key) as T : fallback);
    const global: GlobalConfig = {
      interfaces: this.#patterns(d.get("interfaces"), "defaults.interfaces"),
      pidFile: get("pid-file", DEFAULTS.pidFile),
      controlSocket: get("control-socket", DEFAULTS.controlSocket),
      stateDirectory: get("state-directory", DEFAULTS.stateDirectory),
      logTarget: get("log-target", "stderr"),
      logLevel: get("log-level", "info"),
      metricsListen: get<ListenAddress | null>("metrics-listen", null),
      metricsMaxConnections: get("metrics-max-connections", DEFAULTS.metricsMaxConnections),
      workers: get<number | null>("workers", null),
    };
    const interfaceDefaults: InterfaceConfig = {
      mtu: get("mtu", DEFAULTS.mtu),
      ringBufferSize: get("ring-buffer-size", DEFAULTS.ringBufferSizeKiB * 1024),
      sendBufferSize: get("send-buffer-size", DEFAULTS.sendBufferSizeKiB * 1024),
      receiveBufferSize: get("receive-buffer-size", DEFAULTS.receiveBufferSizeKiB * 1024),
    };
    const deviceDefaults: DeviceDefaults = {
      queueLength: get("queue-length", DEFAULTS.queueLength),
      directIo: get("direct-io", DEFAULTS.directIo),
      traceIo: get("trace-io", DEFAULTS.traceIo),
      maxDelay: get("max-delay", DEFAULTS.maxDelay),
      mergeDelay: get("merge-delay", DEFAULTS.mergeDelay),
      maxRequestAge: get("max-request-age", DEFAULTS.maxRequestAge),
      maxStall: get("max-stall", DEFAULTS.maxStall),
      syncWrites: get("sync-writes", false),
      admin: null,
      adminConfigString: get("admin-config-string", true),
      cephConf: get("ceph-conf", DEFAULTS.cephConf),
      cephUser: get("ceph-user", DEFAULTS.cephUser),
      cephOptions: get<Record<string, string>>("ceph-options", {}),
      fence: get("fence", DEFAULTS.fence),
      fenceAfter: get("fence-after", DEFAULTS.fenceAfter),
    };
    if (this.#options.checkFilesystem !== false) this.#checkStateDirectory(global.stateDirectory);

    const interfaces = new Map<string, InterfaceConfig>();
    for (const [name, section] of interfaceSections) {
      if (!validInterfaceName(name)) {
        this.#unknown(
          section.path,
          `${JSON.stringify(name)} cannot be a network interface name`,
          "interface names have 1 to 15 characters and no '/', ':' or blanks",
        );
        continue;
      }
      const hint = ["path", "uuid", "slot"].some((k) => section.has(k))
        ? "this group has no shelf key, so it holds interface settings; add shelf to export a device"
        : undefined;
      const v = this.#readAll(section, INTERFACE_KEYS, hint);
      interfaces.set(name, {
        mtu: (v.get("mtu") as number | undefined) ?? interfaceDefaults.mtu,
        ringBufferSize: (v.get("ring-buffer-size") as number | undefined) ??
          interfaceDefaults.ringBufferSize,
        sendBufferSize: (v.get("send-buffer-size") as number | undefined) ??
          interfaceDefaults.sendBufferSize,
        receiveBufferSize: (v.get("receive-buffer-size") as number | undefined) ??
          interfaceDefaults.receiveBufferSize,
      });
    }

    const definitions = new Map<string, string[]>();
    if (aclSection) {
      for (const name of aclSection.keys()) {
        const r = aclSection.list(name);
        if (r.ok) definitions.set(name, r.value);
        else this.issue(`${aclSection.path}.${name}`, r.message, r.fix);
      }
    }
    const resolver = new AclResolver({
      definitions,
      prefix: aclSection?.path ?? "acls",
      ethers: () => this.#loadEthers(),
    });
    const acls = resolver.resolveAll();
    this.#takeAclProblems(resolver);
    const defaultAdmin = d.get("admin") as string[] | undefined;
    if (defaultAdmin !== undefined) {
      deviceDefaults.admin = resolver.resolveList("defaults.admin", defaultAdmin);
      this.#takeAclProblems(resolver);
    }

    const devices: DeviceConfig[] = [];
    for (const [name, section] of deviceSections) {
      const device = this.#device(name, section, deviceDefaults, resolver);
      if (device) devices.push(device);
    }
    this.#checkAddresses(devices, deviceSections);
    if (deviceSections.length === 0) {
      this.warn("", "no devices are defined", "add a [devices.NAME] table to export something");
    }
    this.#warnWithoutAdmin(devices, deviceSections);
    if (this.issues.length > 0) throw new ConfigError(this.issues);
    return {
      file: this.#file,
      format: this.#format,
      global,
      interfaceDefaults,
      interfaces,
      acls,
      devices,
      warnings: this.warnings,
    };
  }

  #takeAclProblems(resolver: AclResolver): void {
    for (const p of resolver.problems.splice(0)) this.issue(p.key, p.message, p.fix);
  }

  #device(
    name: string,
    section: Section,
    defaults: DeviceDefaults,
    resolver: AclResolver,
  ): DeviceConfig | null {
    const at = (key: string) => `${section.path}.${key}`;
    const before = this.issues.length;
    if (!/^[A-Za-z0-9._-]+$/.test(name) || name === "." || name === "..") {
      this.issue(
        section.path,
        `device name ${JSON.stringify(name)} cannot name its state files`,
        "use only letters, digits, '.', '_' and '-'",
      );
    }
    const v = this.#readAll(section, DEVICE_KEYS);
    for (const key of ["shelf", "slot"]) {
      if (!section.has(key)) {
        this.issue(at(key), "missing", `every device needs ${key} = N (its AoE address)`);
      }
    }
    let path = v.get("path") as string | undefined;
    const uuid = (v.get("uuid") as string | undefined) ?? null;
    if (section.has("path") && section.has("uuid")) {
      this.issue(section.path, "both path and uuid are given", "keep only one of them");
    } else if (!section.has("path") && !section.has("uuid")) {
      this.issue(at("path"), "missing", 'give path = "/dev/..." or uuid = "..."');
    } else if (uuid !== null) {
      path = this.#resolveUuid(uuid, at("uuid"));
    }
    const rbd = path?.startsWith(RBD_PATH_PREFIX) ? this.#rbd(path, v, defaults, at) : null;
    if (rbd === null) {
      for (const key of ["ceph-conf", "ceph-user", "ceph-options", "fence", "fence-after"]) {
        if (v.has(key)) {
          this.warn(
            at(key),
            "ignored: the device is not a Ceph RBD image",
            'path = "rbd:POOL/IMAGE"',
          );
        }
      }
    }
    let info: PathInfo | null = null;
    if (path !== undefined && rbd === null && this.#options.checkFilesystem !== false) {
      info = this.#checkDevicePath(path, at(uuid !== null ? "uuid" : "path"));
    }
    const serial = v.get("serial") as string | undefined;
    if (serial !== undefined && !/^[\x20-\x7e]{1,20}$/.test(serial)) {
      this.issue(
        at("serial"),
        `${JSON.stringify(serial)} cannot be an IDENTIFY serial number`,
        `use at most ${SERIAL_LENGTH} printable ASCII characters`,
      );
    }
    const offsetSectors = (v.get("offset") as number | undefined) ?? 0;
    const lengthSectors = (v.get("length") as number | undefined) ?? null;
    if (lengthSectors !== null && offsetSectors + lengthSectors > MAX_EXPORT_SECTORS) {
      this.issue(
        at("length"),
        `offset + length = ${offsetSectors + lengthSectors} sectors is past 2^44 (8 PiB)`,
        "lower offset or length",
      );
    }

    const list = (key: "accept" | "deny"): number[] | null => {
      const tokens = v.get(key) as string[] | undefined;
      if (tokens === undefined) return null;
      const macs = resolver.resolveList(at(key), tokens);
      this.#takeAclProblems(resolver);
      if (macs === null || macs.length > 0) return macs;
      if (key === "accept") {
        this.issue(
          at(key),
          `resolves to no address (${tokens.length ? tokens.join(", ") : "empty list"})`,
          "an empty accept list would serve nobody; list clients, or remove accept to serve everyone",
        );
      }
      return null;
    };
    const accept = list("accept");
    const deny = list("deny");
    // A regular file's size is known now (a block device's once it is opened): check the range.
    const problem = info?.kind === "file" && path !== undefined
      ? exportRangeProblem({ path, offsetSectors, lengthSectors }, info.size)
      : null;
    if (problem) {
      this.issue(at(section.has("length") ? "length" : "offset"), problem.message, problem.fix);
    }
    const adminTokens = v.get("admin") as string[] | undefined;
    let admin = defaults.admin;
    if (adminTokens !== undefined) {
      admin = resolver.resolveList(at("admin"), adminTokens);
      this.#takeAclProblems(resolver);
    }
    const views = path !== undefined && rbd !== undefined
      ? this.#views(path, rbd, info, v, at)
      : null;
    if (this.issues.length > before || path === undefined || rbd === undefined) return null;
    const num = (key: string, fallback: number) => (v.get(key) as number | undefined) ?? fallback;
    const bool = (key: string, fallback: boolean) =>
      (v.get(key) as boolean | undefined) ?? fallback;
    const shelf = v.get("shelf") as number;
    const slot = v.get("slot") as number;
    const device: DeviceConfig = {
      name,
      path,
      shelf,
      slot,
      queueLength: num("queue-length", defaults.queueLength),
      directIo: bool("direct-io", defaults.directIo),
      traceIo: bool("trace-io", defaults.traceIo),
      // A snapshot cannot be written: it is served read-only, unless each host writes its own
      // clone of it (views = "rbd:POOL").
      readOnly: bool("read-only", false) || ((rbd?.snapshot ?? null) !== null && views === null),
      broadcast: bool("broadcast", false),
      maxDelay: num("max-delay", defaults.maxDelay),
      mergeDelay: num("merge-delay", defaults.mergeDelay),
      maxRequestAge: num("max-request-age", defaults.maxRequestAge),
      maxStall: num("max-stall", defaults.maxStall),
      interfaces: this.#patterns(v.get("interfaces"), at("interfaces")),
      accept,
      deny,
      admin,
      adminConfigString: bool("admin-config-string", defaults.adminConfigString),
      offsetSectors,
      lengthSectors,
      syncWrites: bool("sync-writes", defaults.syncWrites),
      serial: serial ?? defaultSerial(shelf, slot, this.#options.hostname ?? systemHostname()),
      rbd,
      views,
    };
    return device;
  }

  /**
   * The per-initiator views of a device (`views = ...`), or null without them. What can be
   * checked without making a view is checked here (the directory exists, on the golden image's
   * file system, the golden fits the kind of views); whether the file system shares extents is
   * checked with a real clone when the daemon starts (src/storage/file_views.ts).
   */
  #views(
    path: string,
    rbd: RbdConfig | null,
    info: PathInfo | null,
    v: Map<string, unknown>,
    at: (key: string) => string,
  ): ViewsConfig | null {
    const location = v.get("views") as string | undefined;
    if (location === undefined) {
      for (const key of ["views-lifecycle", "max-views", "views-quiet"]) {
        if (v.has(key)) this.warn(at(key), "ignored: the device has no views", 'set views = "DIR"');
      }
      return null;
    }
    if (v.get("read-only") === true) {
      this.issue(
        at("read-only"),
        "a device with views is written through its views (the golden image never is); read-only = true would refuse every write",
        "remove read-only (the golden image is opened read-only anyway), or remove views to serve the image read-only to every host",
      );
    }
    const rbdViews = location.startsWith(RBD_PATH_PREFIX);
    if (rbdViews) {
      const pool = location.slice(RBD_PATH_PREFIX.length);
      if (rbd === null) {
        this.issue(
          at("views"),
          `views = "${location}" makes RBD clones, which need an RBD snapshot as the golden image, but path is ${path}`,
          'serve a protected snapshot (path = "rbd:POOL/IMAGE@SNAP"), or give views a directory on the golden file\'s XFS or btrfs file system',
        );
      } else if (rbd.snapshot === null) {
        this.issue(
          at("path"),
          `views are RBD clones, which are made of a snapshot, but ${path} is an image`,
          `serve a protected snapshot: rbd snap create ${rbd.pool}/${rbd.image}@golden; rbd snap protect ${rbd.pool}/${rbd.image}@golden; path = "rbd:${rbd.pool}/${rbd.image}@golden"`,
        );
      }
      if (!/^[A-Za-z0-9._-]+$/.test(pool)) {
        this.issue(at("views"), `"${pool}" is not a pool name`, 'write views = "rbd:POOL"');
      }
    } else if (rbd !== null) {
      this.issue(
        at("views"),
        `the golden image is an RBD ${
          rbd.snapshot ? "snapshot" : "image"
        }: its views are RBD clones, not files in ${location}`,
        `write views = "rbd:${rbd.pool}" (the pool that gets one clone per host)`,
      );
    } else {
      if (!location.startsWith("/")) {
        this.issue(
          at("views"),
          `${location} is not an absolute path`,
          "give the directory of the views from /",
        );
      } else if (this.#options.checkFilesystem !== false) {
        this.#checkViewsDirectory(location, path, info, at);
      }
    }
    return {
      location,
      lifecycle: (v.get("views-lifecycle") as ViewsConfig["lifecycle"] | undefined) ??
        DEFAULTS.viewsLifecycle,
      maxViews: (v.get("max-views") as number | undefined) ?? DEFAULTS.maxViews,
      quiet: (v.get("views-quiet") as number | undefined) ?? DEFAULTS.viewsQuiet,
    };
  }

  /** The views directory exists, and is on the golden image's file system (FICLONE: EXDEV). */
  #checkViewsDirectory(
    dir: string,
    golden: string,
    info: PathInfo | null,
    at: (key: string) => string,
  ): void {
    if (info !== null && info.kind !== "file") {
      this.issue(
        at("path"),
        `${golden} is a block device; views are reflinked copies of a regular file`,
        "put the golden image in a file on XFS or btrfs (the views beside it), or serve an RBD snapshot",
      );
      return;
    }
    let stat: Deno.FileInfo;
    try {
      stat = Deno.statSync(dir);
    } catch (e) {
      this.issue(
        at("views"),
        `views directory ${dir}: ${errorReason(e)}`,
        `create it on the golden image's file system: mkdir -p ${dir}`,
      );
      return;
    }
    if (!stat.isDirectory) {
      this.issue(at("views"), `${dir} is not a directory`, "give the directory of the views");
      return;
    }
    let goldenDev: number | null = null;
    try {
      goldenDev = Deno.statSync(golden).dev;
    } catch { /* reported with path */ }
    if (goldenDev !== null && stat.dev !== goldenDev) {
      this.issue(
        at("views"),
        `views directory ${dir} is on another file system than the golden image ${golden}: reflinks (FICLONE) only work within one file system (EXDEV)`,
        "put the views directory on the golden image's XFS or btrfs file system",
      );
    }
  }

  /**
   * The Ceph RBD image of `path = "rbd:POOL/IMAGE[@SNAP]"` with its cluster settings, or
   * undefined when the path does not name one (an issue). Nothing is looked up on disk or in
   * the cluster here: the daemon connects when it opens the device.
   */
  #rbd(
    path: string,
    v: Map<string, unknown>,
    defaults: DeviceDefaults,
    at: (key: string) => string,
  ): RbdConfig | undefined {
    let spec;
    try {
      spec = parseImageSpec(path.slice(RBD_PATH_PREFIX.length));
    } catch {
      this.issue(
        at("path"),
        `${JSON.stringify(path)} is not an RBD image`,
        'write path = "rbd:POOL/IMAGE", or "rbd:POOL/IMAGE@SNAP" for a snapshot (served read-only)',
      );
      return undefined;
    }
    return {
      pool: spec.pool,
      image: spec.image,
      snapshot: spec.snapshot ?? null,
      conf: (v.get("ceph-conf") as string | undefined) ?? defaults.cephConf,
      user: (v.get("ceph-user") as string | undefined) ?? defaults.cephUser,
      options: {
        ...defaults.cephOptions,
        ...(v.get("ceph-options") as Record<string, string> | undefined),
      },
      fence: (v.get("fence") as boolean | undefined) ?? defaults.fence,
      fenceAfter: (v.get("fence-after") as number | undefined) ?? defaults.fenceAfter,
    };
  }

  /**
   * Without `admin`, any host a device serves may edit its MAC Mask List or take (or force) a
   * reservation, locking out every other host, persistently: say so where there are others. A
   * few such devices are named one by one; more are summed up in one line (a configuration of
   * hundreds of devices would otherwise log hundreds of lines on every start and reload).
   */
  #warnWithoutAdmin(devices: DeviceConfig[], sections: [string, Section][]): void {
    const open = devices.filter((d) =>
      d.admin === null && (d.accept === null || d.accept.length > 1)
    );
    const pathOf = (dev: DeviceConfig) =>
      sections.find(([n]) => n === dev.name)?.[1].path ?? `devices.${dev.name}`;
    const risk =
      "any of them may edit the MAC Mask List or take or force a reservation, which locks the others out and persists across restarts";
    if (open.length <= WARN_EACH_UP_TO) {
      for (const dev of open) {
        const who = dev.accept === null
          ? "every host (no accept list)"
          : `${dev.accept.length} hosts (its accept list)`;
        const path = pathOf(dev);
        this.warn(
          path,
          `served to ${who} and no admin list is set: ${risk}`,
          `set admin = ["MAC", ...] in [${path}] or [defaults] to allow these edits only from the hosts listed`,
        );
      }
      return;
    }
    const named = open.slice(0, WARN_EACH_UP_TO).map(pathOf).join(", ");
    this.warn(
      "",
      `${open.length} devices (${named} and ${
        open.length - WARN_EACH_UP_TO
      } more) are served to more than one host and no admin list is set: ${risk}`,
      `set admin = ["MAC", ...] in [defaults], or in each device's table, to allow these edits only from the hosts listed`,
    );
  }

  #checkAddresses(devices: DeviceConfig[], sections: [string, Section][]): void {
    const seen = new Map<string, string>();
    for (const dev of devices) {
      const address = `${dev.shelf}.${dev.slot}`;
      const other = seen.get(address);
      if (other !== undefined) {
        const path = sections.find(([n]) => n === dev.name)?.[1].path ?? dev.name;
        this.issue(
          path,
          `shelf ${dev.shelf}, slot ${dev.slot} is already used by device ${other}`,
          `give ${dev.name} or ${other} another shelf or slot`,
        );
      } else {
        seen.set(address, dev.name);
      }
    }
  }

  #loadEthers(): { table: EthersTable | null; file: string; reason: string } {
    if (this.#ethers) return this.#ethers;
    const file = this.#options.ethersFile ?? "/etc/ethers";
    try {
      this.#ethers = { table: parseEthers(Deno.readTextFileSync(file)), file, reason: "" };
    } catch (e) {
      this.#ethers = { table: null, file, reason: `cannot read it: ${errorReason(e)}` };
    }
    return this.#ethers;
  }

  #resolveUuid(uuid: string, key: string): string | undefined {
    const dir = this.#options.uuidDirectory ?? "/dev/disk/by-uuid";
    if (uuid.includes("/") || uuid === "." || uuid === "..") {
      this.issue(key, `${JSON.stringify(uuid)} is not a UUID`, "copy the UUID from blkid");
      return undefined;
    }
    // udev names the links as blkid reports the UUID: usually lower case, FAT/NTFS upper case.
    for (const candidate of new Set([uuid, uuid.toLowerCase(), uuid.toUpperCase()])) {
      try {
        return realPath(`${dir}/${candidate}`);
      } catch {
        // try the next spelling
      }
    }
    this.issue(
      key,
      `UUID ${uuid} does not match any known device (no link in ${dir})`,
      "check the UUID with blkid, or give path instead",
    );
    return undefined;
  }

  #checkDevicePath(path: string, key: string): PathInfo | null {
    let info: PathInfo;
    try {
      info = statPath(path);
    } catch (e) {
      this.issue(
        key,
        `cannot use ${path}: ${errorReason(e)}`,
        "give an existing block device or file",
      );
      return null;
    }
    if (info.kind !== "file" && info.kind !== "block") {
      this.issue(
        key,
        `${path} is not a block device or regular file`,
        "export a block device or a regular file",
      );
      return null;
    }
    return info;
  }

  #checkStateDirectory(dir: string): void {
    const key = "defaults.state-directory";
    const fix = `create it (mkdir -p ${dir}) and make it writable, or set state-directory`;
    try {
      const info = Deno.statSync(dir);
      if (!info.isDirectory) {
        this.issue(key, `${dir} is not a directory`, fix);
        return;
      }
      if (info.mode !== null && (info.mode & 0o002) !== 0) {
        // Anyone could plant files (or symlinks) among the state files there.
        this.issue(
          key,
          `state directory ${dir} is writable by every user`,
          `chmod o-w ${dir} (a directory of its own, e.g. /var/lib/ggaoed, mode 0700)`,
        );
        return;
      }
      const gid = effectiveIds().gid;
      if (info.mode !== null && (info.mode & 0o020) !== 0 && info.gid !== gid) {
        // Every member of that group could plant files or symlinks there, as above.
        this.issue(
          key,
          `state directory ${dir} is writable by group ${info.gid}, which is not the daemon's own group (${gid})`,
          `chmod g-w ${dir}, or chown :${gid} ${dir} if that group may write there`,
        );
        return;
      }
    } catch (e) {
      this.issue(key, `state directory ${dir}: ${errorReason(e)}`, fix);
      return;
    }
    // access(W_OK) is not available without FFI, and mode bits lie for root and read-only
    // mounts: creating a file is the honest test.
    const probe = `${dir}/.ggaoed-write-test-${Deno.pid}`;
    try {
      Deno.writeFileSync(probe, new Uint8Array(0), { createNew: true, mode: 0o600 });
      Deno.removeSync(probe);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) {
        Deno.removeSync(probe); // a leftover of a crashed check: the directory is writable
        return;
      }
      this.issue(key, `state directory ${dir} is not writable: ${errorReason(e)}`, fix);
    }
  }
}
