/**
 * The project version, in one place: `ggaoed --version`, the IDENTIFY firmware string and the
 * Query Config Firmware field all come from here.
 *
 * @module
 */

/** The version string (IDENTIFY firmware revision, `--version`). */
export const VERSION = "2.0.0";

/** Query Config "Firmware Version" (16 bits, big-endian on the wire): 2.0.0 as 0x0200. */
export const FIRMWARE_VERSION = 0x0200;
