/**
 * AoE and ATA wire constants, named as in the AoE r11 specification, the Linux kernel
 * (`drivers/block/aoe/aoe.h`, `include/linux/ata.h`) and the original ggaoed's `aoe.h`, so that
 * they grep to those documents.
 *
 * @module
 */

/** EtherType of ATA over Ethernet. */
export const ETH_P_AOE = 0x88a2;
/** Ethernet header: destination MAC, source MAC, EtherType. */
export const ETH_HLEN = 14;
/** Shortest Ethernet frame without FCS: every reply we build is padded to this. */
export const ETH_ZLEN = 60;

/** The only AoE protocol version (high nibble of byte 14). */
export const AOE_VERSION = 1;

/** Flags (low nibble of byte 14). */
export const AOE_FL_RESPONSE = 0x08;
export const AOE_FL_ERROR = 0x04;

/** Broadcast shelf (Major) and slot (Minor). */
export const AOE_SHELF_BROADCAST = 0xffff;
export const AOE_SLOT_BROADCAST = 0xff;

/** AoE commands (byte 19). Commands 240..255 are vendor specific; we implement none. */
export const AOE_CMD_ATA = 0;
export const AOE_CMD_CFG = 1;
export const AOE_CMD_MASK = 2;
export const AOE_CMD_RESERVE = 3;

/** AoE error codes (byte 15 of a reply with the E flag). */
export const AOE_ERR_BADCMD = 1;
export const AOE_ERR_BADARG = 2;
export const AOE_ERR_DEVUNAVAIL = 3;
export const AOE_ERR_CFG_SET = 4;
export const AOE_ERR_UNSUPVER = 5;
export const AOE_ERR_RESERVED = 6;

/** Header lengths, counted from the first byte of the Ethernet frame. */
export const AOE_HDR_LEN = 24;
export const AOE_ATA_HDR_LEN = 36;
export const AOE_CFG_HDR_LEN = 32;
export const AOE_MASK_HDR_LEN = 28;
export const AOE_RESERVE_HDR_LEN = 26;

/** ATA AFlags (byte 24). */
export const AOE_AFL_EXT = 0x40; // LBA48
export const AOE_AFL_DEV = 0x10; // device/head register bit
export const AOE_AFL_ASYNC = 0x02;
export const AOE_AFL_WRITE = 0x01;

/** One ATA sector. */
export const SECTOR_SIZE = 512;
/** LBA28 addresses are masked to this when AFlags E is clear. */
export const LBA28_MASK = 0x0fffffff;

/** ATA opcodes (Cmd/Status byte of a request). */
export const ATA_CMD_READ = 0x20;
export const ATA_CMD_READ_EXT = 0x24;
export const ATA_CMD_WRITE = 0x30;
export const ATA_CMD_WRITE_EXT = 0x34;
export const ATA_CMD_PACKET = 0xa0;
export const ATA_CMD_SMART = 0xb0;
export const ATA_CMD_CHK_POWER = 0xe5;
export const ATA_CMD_FLUSH = 0xe7;
export const ATA_CMD_FLUSH_EXT = 0xea;
export const ATA_CMD_ID_ATA = 0xec;

/** ATA status bits (Cmd/Status byte of a reply). */
export const ATA_DRDY = 0x40;
export const ATA_ERR = 0x01;
/** ATA error register bits (Err/Feature byte of a reply). */
export const ATA_ABORTED = 0x04;
export const ATA_IDNF = 0x10;
export const ATA_UNC = 0x40;
/** CHECK POWER MODE sector count: active or idle. */
export const ATA_POWER_ACTIVE = 0xff;

/** Query Config subcommands (CCmd, low nibble of byte 29). */
export const AOE_CFG_READ = 0;
export const AOE_CFG_TEST = 1;
export const AOE_CFG_TEST_PREFIX = 2;
export const AOE_CFG_SET = 3;
export const AOE_CFG_FORCE_SET = 4;
/** Longest config string. */
export const AOE_CFG_MAX_LEN = 1024;

/** Mac Mask List subcommands (MCmd, byte 25). */
export const AOE_MCMD_READ = 0;
export const AOE_MCMD_EDIT = 1;
/** Mac Mask List errors (MError, byte 26). */
export const AOE_MERR_BADDIR = 2;
export const AOE_MERR_FULL = 3;
/** Mac Mask directive commands (DCmd). */
export const AOE_DCMD_NONE = 0;
export const AOE_DCMD_ADD = 1;
export const AOE_DCMD_DELETE = 2;
/** One Mac Mask directive: reserved, DCmd, MAC. */
export const AOE_DIRECTIVE_LEN = 8;

/** Reserve/Release subcommands (RCmd, byte 24). */
export const AOE_RCMD_READ = 0;
export const AOE_RCMD_SET = 1;
export const AOE_RCMD_FORCE_SET = 2;
/** One MAC in a Reserve/Release list. */
export const AOE_MAC_LEN = 6;
