/**
 * ggaoed's FFI layer: everything that touches the kernel (Linux x86-64), and librbd/librados
 * for Ceph RBD images.
 *
 * Callers get classes, descriptors (numbers), `Uint8Array`s and {@link SysError}s; no raw
 * pointer leaves this directory.
 *
 * @module
 */

export { Errno, errnoCode, SysError, sysError } from "./errno.ts";
export type { Advice, ErrnoCode } from "./errno.ts";
export { copyBytes, Memory, PAGE_SIZE } from "./memory.ts";
export {
  Epoll,
  EPOLLERR,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EventFd,
  realtimeSeconds,
  TimerFd,
} from "./events.ts";
export {
  AIO_MAX_IOVECS,
  AioContext,
  IOCB_CMD_FDSYNC,
  IOCB_CMD_FSYNC,
  IOCB_CMD_NOOP,
  IOCB_CMD_PREAD,
  IOCB_CMD_PREADV,
  IOCB_CMD_PWRITE,
  IOCB_CMD_PWRITEV,
} from "./aio.ts";
export type { AioBackend, AioOptions } from "./aio.ts";
export {
  chmodCreatedFile,
  cloneFile,
  closeFd,
  dupStorage,
  effectiveIds,
  fdatasync,
  fileStatus,
  fsyncPath,
  openPidFile,
  openStorage,
  pathIdentity,
  pread,
  processInfo,
  pwrite,
  realPath,
  setDirect,
  statPath,
  storageSize,
  writePidFile,
} from "./storage.ts";
export type { FileStatus, PathInfo, PidFile, Storage, StorageOptions } from "./storage.ts";
export { interfaceInfo, listInterfaces } from "./netif.ts";
export type { InterfaceInfo } from "./netif.ts";
export { FileMap, MapCopies } from "./filemap.ts";
export { filterProgram, MAX_FILTER_ADDRESSES, PacketSocket } from "./packet.ts";
export type { AddressFilter, AoeAddress, PacketFilter, PacketSocketOptions } from "./packet.ts";
export { sockaddrUn, SYSLOG_SEVERITY, SyslogWriter } from "./syslog.ts";
export { dumpLinks, LinkMonitor } from "./netlink.ts";
export type { DrainResult, LinkEvent, LinkInfo, LinkMonitorOptions } from "./netlink.ts";
export {
  EBLOCKLISTED,
  EVENT_TYPE_EVENTFD,
  loadCephLibraries,
  parseImageSpec,
  RADOS_DEFAULT_OPTIONS,
  RadosCluster,
  RBD_FEATURE_EXCLUSIVE_LOCK,
  RBD_FEATURE_LAYERING,
  RBD_FEATURE_NAMES,
  RBD_IMAGE_OPTION_CLONE_FORMAT,
  RBD_IMAGE_SPEC,
  RBD_MAX_IOVECS,
  RbdAioContext,
  RbdImage,
} from "./rbd.ts";
export type {
  CloneOptions,
  ImageSpec,
  RadosOptions,
  RbdImageName,
  RbdImageStat,
  RbdImageToken,
} from "./rbd.ts";
export { monotonicMicroseconds, NotifySocket } from "./notify.ts";
