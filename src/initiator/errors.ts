/**
 * Errors the initiator raises: each says which target, which request, and what the target (or
 * its silence) meant, so that a failing test or CLI run reads as a sentence.
 *
 * @module
 */

import {
  AOE_ERR_BADARG,
  AOE_ERR_BADCMD,
  AOE_ERR_CFG_SET,
  AOE_ERR_DEVUNAVAIL,
  AOE_ERR_RESERVED,
  AOE_ERR_UNSUPVER,
  ATA_ABORTED,
  ATA_IDNF,
  ATA_UNC,
} from "../protocol/constants.ts";

/** The AoE error codes by name, as the r11 specification words them. */
const AOE_ERROR_TEXT: Record<number, string> = {
  [AOE_ERR_BADCMD]: "unrecognized command code",
  [AOE_ERR_BADARG]: "bad argument parameter",
  [AOE_ERR_DEVUNAVAIL]: "device unavailable",
  [AOE_ERR_CFG_SET]: "config string present",
  [AOE_ERR_UNSUPVER]: "unsupported version",
  [AOE_ERR_RESERVED]: "target is reserved",
};

/** A short name for an AoE error code ("bad argument parameter"). */
export function aoeErrorText(code: number): string {
  return AOE_ERROR_TEXT[code] ?? `unknown AoE error ${code}`;
}

/** The target answered with the AoE E flag: `code` is the AoE error (1, 2, 3, 4, 5, 6). */
export class AoeError extends Error {
  /** AoE error code (byte 15 of the reply). */
  readonly code: number;
  /** AoE command of the request (0 ATA, 1 config, 2 mask, 3 reserve, ...). */
  readonly command: number;
  constructor(target: string, what: string, code: number, command: number) {
    super(`${target}: ${what} failed with AoE error ${code} (${aoeErrorText(code)})`);
    this.name = "AoeError";
    this.code = code;
    this.command = command;
  }
}

/** Names of the ATA error register bits we expect from AoE targets. */
function ataErrorText(error: number): string {
  const names: string[] = [];
  if (error & ATA_UNC) names.push("UNC");
  if (error & ATA_IDNF) names.push("IDNF");
  if (error & ATA_ABORTED) names.push("ABRT");
  return names.length ? names.join("|") : "no error bits";
}

/** The target answered an ATA command with the ERR bit in the status. */
export class AtaError extends Error {
  /** ATA status register (ERR = 0x01 set). */
  readonly status: number;
  /** ATA error register (ABRT 0x04, IDNF 0x10, UNC 0x40). */
  readonly error: number;
  /** ATA opcode of the request. */
  readonly ataCommand: number;
  /** First sector of the request. */
  readonly lba: number;
  constructor(target: string, ataCommand: number, lba: number, status: number, error: number) {
    super(
      `${target}: ATA command 0x${hex2(ataCommand)} at LBA ${lba} failed: status 0x${
        hex2(status)
      }, error 0x${hex2(error)} (${ataErrorText(error)})`,
    );
    this.name = "AtaError";
    this.status = status;
    this.error = error;
    this.ataCommand = ataCommand;
    this.lba = lba;
  }
}

/** No (valid) reply within the retransmit budget. */
export class AoeTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AoeTimeoutError";
  }
}

/** The target answered with something that cannot be the reply (short read data, ...). */
export class AoeProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AoeProtocolError";
  }
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}
