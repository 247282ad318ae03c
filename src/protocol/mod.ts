/**
 * AoE r11 on the wire: constants, and a builder/parser pair for every message in both
 * directions, plus the target's decision engine. Pure functions over byte arrays, no I/O.
 *
 * @module
 */

export * from "./constants.ts";
export * from "./header.ts";
export * from "./ata.ts";
export * from "./identify.ts";
export * from "./config.ts";
export * from "./macmask.ts";
export * from "./reserve.ts";
export * from "./engine.ts";
export * from "./types.ts";
