/**
 * iPXE as an AoE initiator: Debian's `ipxe.lkrn` booted by qemu (TCG) as a Linux kernel whose
 * initrd is an iPXE script (`#!ipxe`, run in place of the embedded one), on a tap of a network
 * namespace made by withTapNamespace, with a NIC MAC the test chooses. The script opens net0 (no
 * DHCP: AoE needs no address) and runs `sanboot aoe:eSHELF.SLOT`; iPXE hooks the disk as BIOS
 * drive 0x80, reads its sector 0 to 0000:7C00 through INT 13 and jumps to it.
 *
 * The boot sector made by bootSector() prints `AOE-BOOT <marker>` on COM1 and ends qemu through
 * its isa-debug-exit device, so a run shows which disk (or per-host view of one) was booted. The
 * firmware's own messages reach the serial console too: SeaBIOS's serial console
 * (`etc/sercon-port`) copies what iPXE and SeaBIOS print through the video BIOS, so a failed boot
 * says why ("Could not open SAN device: Connection timed out", "No bootable device.").
 * See tests/kernel/README.md.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { QEMU_BASE_ARGS, qemuOnTapUnavailable, runQemu } from "./harness.ts";

/** iPXE built as a Linux kernel image, from Debian's package `ipxe`. */
export const IPXE_LKRN = "/usr/lib/ipxe/ipxe.lkrn";

/** Why iPXE boot tests cannot run here (see qemuOnTapUnavailable), or null when they can. */
export function ipxeUnavailable(): string | null {
  const reason = qemuOnTapUnavailable("iPXE boot");
  if (reason) return reason;
  if (!existsSync(IPXE_LKRN)) {
    return `iPXE boot tests need ${IPXE_LKRN} (Debian package ipxe: scripts/install-deps.sh --test)`;
  }
  return null;
}

/** The I/O port of qemu's isa-debug-exit device; a byte v written there exits with 2v+1. */
const DEBUG_EXIT_PORT = 0xf4;
/** The byte the boot sector writes to DEBUG_EXIT_PORT once its marker is out. */
const DEBUG_EXIT_VALUE = 0x10;
/** qemu's exit status after the boot sector ran to its end. */
export const BOOT_SECTOR_EXIT_STATUS = (DEBUG_EXIT_VALUE << 1) | 1;

/**
 * The smallest disk iPXE boots: it gives a disk without partitions 255 heads of 63 sectors and
 * reads the boot sector by cylinder/head/sector, which fails when the disk holds less than one
 * cylinder of those (8,225,280 bytes) and so has zero cylinders.
 */
export const MIN_BOOT_DISK_BYTES = 255 * 63 * 512;

/**
 * A 512-byte x86 boot sector that prints "\r\nAOE-BOOT <marker>\r\n" on COM1 (waiting for the
 * transmitter before each byte) and then makes qemu exit with BOOT_SECTOR_EXIT_STATUS (through
 * isa-debug-exit; halts where that device is absent). `signature: false` leaves out the 0x55AA
 * that firmware requires before it jumps to a boot sector.
 */
export function bootSector(marker: string, options: { signature?: boolean } = {}): Uint8Array {
  if (!/^[A-Z0-9-]{1,32}$/.test(marker)) throw new Error(`bad boot marker ${marker}`);
  // Real mode, loaded at 0000:7C00. Offsets are from the start of the sector.
  const code = [
    [0xfa], //                  00 cli
    [0x31, 0xc0], //            01 xor ax, ax
    [0x8e, 0xd8], //            03 mov ds, ax          ; the message is at 0000:7C00 + MESSAGE
    [0xbe, 0x00, 0x00], //      05 mov si, 7C00h + MESSAGE (patched below)
    [0xba, 0xfd, 0x03], //      08 mov dx, 3FDh        ; COM1 line status register
    [0xec], //                  0B wait: in al, dx
    [0xa8, 0x20], //            0C test al, 20h        ; transmit holding register empty?
    [0x74, 0xfb], //            0E jz wait
    [0xac], //                  10 lodsb               ; al = next message byte
    [0x84, 0xc0], //            11 test al, al
    [0x74, 0x07], //            13 jz done             ; the NUL after the message
    [0xb2, 0xf8], //            15 mov dl, F8h         ; 3F8h: COM1 transmit holding register
    [0xee], //                  17 out dx, al
    [0xb2, 0xfd], //            18 mov dl, FDh         ; back to the line status register
    [0xeb, 0xef], //            1A jmp wait
    [0xb0, DEBUG_EXIT_VALUE], // 1C done: mov al, 10h
    [0xe6, DEBUG_EXIT_PORT], // 1E out F4h, al         ; isa-debug-exit: qemu exits with 33
    [0xf4], //                  20 halt: hlt           ; no exit device: stay here
    [0xeb, 0xfd], //            21 jmp halt
  ].flat();
  const message = new TextEncoder().encode(`\r\nAOE-BOOT ${marker}\r\n\0`);
  const sector = new Uint8Array(512);
  sector.set(code, 0);
  sector.set(message, code.length);
  new DataView(sector.buffer).setUint16(6, 0x7c00 + code.length, true);
  if (options.signature ?? true) sector.set([0x55, 0xaa], 510);
  return sector;
}

/** The marker a booted bootSector() printed in `serial`, or null when none ran. */
export function bootMarker(serial: string): string | null {
  return /^AOE-BOOT ([A-Z0-9-]+)\r?$/m.exec(serial)?.[1] ?? null;
}

/**
 * Writes a sparse disk image of `sizeBytes` (at least MIN_BOOT_DISK_BYTES) at `path` whose
 * sector 0 is `sector`.
 */
export async function writeBootImage(
  path: string,
  sector: Uint8Array,
  sizeBytes = 16 * 1024 * 1024,
): Promise<void> {
  if (sizeBytes < MIN_BOOT_DISK_BYTES) {
    throw new Error(`a boot disk for iPXE needs at least ${MIN_BOOT_DISK_BYTES} bytes`);
  }
  await Deno.writeFile(path, sector);
  await Deno.truncate(path, sizeBytes);
}

/** Options for one iPXE boot. */
export interface IpxeBootOptions {
  netns: string;
  tap: string;
  /** The NIC's MAC address (aa:bb:cc:dd:ee:ff): the source of every AoE frame iPXE sends. */
  mac: string;
  shelf: number;
  slot: number;
  /** Whole budget; qemu is killed (by PID) when it runs out. */
  timeoutMs: number;
}

/** What one iPXE boot produced. */
export interface IpxeBoot {
  /** The serial console: SeaBIOS's and iPXE's messages, then the boot sector's. */
  output: string;
  /** The marker the booted sector printed (bootMarker), or null. */
  marker: string | null;
  /** qemu's exit status: BOOT_SECTOR_EXIT_STATUS when the boot sector ran to its end. */
  exitCode: number;
  /** iPXE's and SeaBIOS's error lines (why nothing was booted), empty when none. */
  errors: string[];
  timedOut: boolean;
  durationMs: number;
}

/** What SeaBIOS's serial console adds to the text: ANSI colour and cursor escapes, ESC c. */
const TERMINAL_ESCAPES = new RegExp(`${String.fromCharCode(0x1b)}(\\[[0-9;?]*[A-Za-z]|c)`, "g");

/** SeaBIOS's last words once every boot entry failed (it then waits and retries forever). */
const NO_BOOT_DEVICE = "No bootable device.";

/**
 * Boots iPXE under qemu on `tap` in `netns` with the NIC MAC `mac`, and sanboots
 * aoe:e<shelf>.<slot>. Returns when qemu exits (the boot sector ends it), when SeaBIOS has
 * nothing left to boot, or when `timeoutMs` runs out. Never throws for a failed boot.
 */
export async function runIpxeSanboot(opts: IpxeBootOptions): Promise<IpxeBoot> {
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(opts.mac)) throw new Error(`bad MAC ${opts.mac}`);
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-ipxe-" });
  try {
    // iPXE runs an initrd that starts with #!ipxe as its script.
    const script = join(dir, "boot.ipxe");
    await Deno.writeTextFile(
      script,
      `#!ipxe\nifopen net0\nsanboot aoe:e${opts.shelf}.${opts.slot}\n`,
    );
    // SeaBIOS reads the port of its serial console as a little-endian integer.
    const sercon = join(dir, "sercon-port");
    await Deno.writeFile(sercon, new Uint8Array([0xf8, 0x03]));
    const qemu = await runQemu(opts.netns, [
      ...QEMU_BASE_ARGS,
      "-m",
      "128",
      // qemu warns that the name lacks "opt/"; SeaBIOS looks for exactly this one.
      "-fw_cfg",
      `name=etc/sercon-port,file=${sercon}`,
      "-kernel",
      IPXE_LKRN,
      "-initrd",
      script,
      "-netdev",
      `tap,id=n0,ifname=${opts.tap},script=no,downscript=no`,
      // No option ROM: SeaBIOS must not fall back to booting the NIC's own iPXE.
      "-device",
      `virtio-net-pci,netdev=n0,mac=${opts.mac},romfile=`,
      "-device",
      `isa-debug-exit,iobase=${DEBUG_EXIT_PORT},iosize=0x04`,
    ], {
      timeoutMs: opts.timeoutMs,
      stopWhen: (output) => output.includes(NO_BOOT_DEVICE),
    });
    // SeaBIOS's copy of the screen carries terminal escapes; its last message has no line
    // end, so qemu's own note on stderr may follow on the same line.
    const errors = qemu.output.split("\n")
      .map((line) => line.replace(TERMINAL_ESCAPES, "").replace(/\r/g, "").trim())
      .map((line) => line.startsWith(NO_BOOT_DEVICE) ? NO_BOOT_DEVICE : line)
      .filter((line) =>
        /^(Could not|Boot from SAN device .* failed|Boot failed)/.test(line) ||
        line === NO_BOOT_DEVICE
      );
    return {
      output: qemu.output,
      marker: bootMarker(qemu.output),
      exitCode: qemu.status.code,
      errors,
      timedOut: qemu.timedOut,
      durationMs: qemu.durationMs,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
