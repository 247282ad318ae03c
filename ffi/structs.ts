/**
 * Kernel and libc struct layouts on Linux x86-64: byte offsets and sizes.
 *
 * Each table maps a field to its byte offset and has a `size`. They are checked against the C
 * headers by tests/ffi/structs_test.ts, which compiles a program printing sizeof/offsetof.
 * 64-bit fields that the hot path touches are accessed as two little-endian u32 halves
 * (`lo` at the offset, `hi` at offset + 4) so that no BigInt is involved.
 *
 * @module
 */

/**
 * struct sockaddr_ll (20 bytes), linux/if_packet.h
 * ```
 *  0 u16 sll_family     (AF_PACKET)
 *  2 u16 sll_protocol   (big-endian ethertype)
 *  4 i32 sll_ifindex
 *  8 u16 sll_hatype
 * 10 u8  sll_pkttype
 * 11 u8  sll_halen
 * 12 u8  sll_addr[8]
 * ```
 */
export const SOCKADDR_LL = {
  size: 20,
  family: 0,
  protocol: 2,
  ifindex: 4,
  hatype: 8,
  pkttype: 10,
  halen: 11,
  addr: 12,
} as const;

/** struct tpacket_req (16 bytes): four u32 — block_size, block_nr, frame_size, frame_nr. */
export const TPACKET_REQ = {
  size: 16,
  blockSize: 0,
  blockNr: 4,
  frameSize: 8,
  frameNr: 12,
} as const;

/**
 * struct tpacket2_hdr (32 bytes), at the start of every ring frame.
 * ```
 *  0 u32 tp_status   (RX: 0 kernel, bit 0 user, bit 2 losing; TX: 0 available, 1 send request)
 *  4 u32 tp_len      (wire length)
 *  8 u32 tp_snaplen  (bytes in the frame)
 * 12 u16 tp_mac      (offset of the Ethernet header from the frame start)
 * 14 u16 tp_net
 * 16 u32 tp_sec
 * 20 u32 tp_nsec
 * 24 u16 tp_vlan_tci
 * 26 u16 tp_vlan_tpid
 * 28 u8  tp_padding[4]
 * ```
 */
export const TPACKET2_HDR = {
  size: 32,
  status: 0,
  len: 4,
  snaplen: 8,
  mac: 12,
  net: 14,
  sec: 16,
  nsec: 20,
  vlanTci: 24,
  vlanTpid: 26,
} as const;

/** struct tpacket_stats (8 bytes): u32 tp_packets, u32 tp_drops (reading resets them). */
export const TPACKET_STATS = { size: 8, packets: 0, drops: 4 } as const;

/**
 * struct iocb (64 bytes), linux/aio_abi.h, little-endian x86-64.
 * ```
 *  0 u64 aio_data        (returned in io_event.data: our slot number)
 *  8 u32 aio_key
 * 12 u32 aio_rw_flags
 * 16 u16 aio_lio_opcode
 * 18 i16 aio_reqprio
 * 20 u32 aio_fildes
 * 24 u64 aio_buf         (PREADV/PWRITEV: address of the iovec array)
 * 32 u64 aio_nbytes      (PREADV/PWRITEV: iovec count)
 * 40 i64 aio_offset
 * 48 u64 aio_reserved2
 * 56 u32 aio_flags       (IOCB_FLAG_RESFD)
 * 60 u32 aio_resfd       (eventfd signalled on completion)
 * ```
 */
export const IOCB = {
  size: 64,
  data: 0,
  key: 8,
  rwFlags: 12,
  opcode: 16,
  reqprio: 18,
  fildes: 20,
  buf: 24,
  nbytes: 32,
  offset: 40,
  reserved2: 48,
  flags: 56,
  resfd: 60,
} as const;

/** struct io_event (32 bytes): u64 data, u64 obj, i64 res (bytes or -errno), i64 res2. */
export const IO_EVENT = { size: 32, data: 0, obj: 8, res: 16, res2: 24 } as const;

/** struct iovec (16 bytes): void *iov_base, size_t iov_len. */
export const IOVEC = { size: 16, base: 0, len: 8 } as const;

/**
 * struct msghdr (56 bytes)
 * ```
 *  0 void   *msg_name        8 u32 msg_namelen
 * 16 iovec  *msg_iov        24 size_t msg_iovlen
 * 32 void   *msg_control    40 size_t msg_controllen
 * 48 i32    msg_flags
 * ```
 */
export const MSGHDR = {
  size: 56,
  name: 0,
  namelen: 8,
  iov: 16,
  iovlen: 24,
  control: 32,
  controllen: 40,
  flags: 48,
} as const;

/** struct cmsghdr (16 bytes, then the data): size_t cmsg_len, i32 cmsg_level, i32 cmsg_type. */
export const CMSGHDR = { size: 16, len: 0, level: 8, type: 12 } as const;

/** struct epoll_event (12 bytes, packed on x86-64): u32 events, u64 data. */
export const EPOLL_EVENT = { size: 12, events: 0, data: 4 } as const;

/** struct timespec (16 bytes): i64 tv_sec, i64 tv_nsec. */
export const TIMESPEC = { size: 16, sec: 0, nsec: 8 } as const;

/** struct itimerspec (32 bytes): timespec it_interval, timespec it_value. */
export const ITIMERSPEC = { size: 32, interval: 0, value: 16 } as const;

/**
 * struct ifreq (40 bytes): char ifr_name[16], then a union at 16 — int ifr_ifindex,
 * int ifr_mtu, short ifr_flags, struct sockaddr ifr_hwaddr (u16 sa_family @16, sa_data @18).
 */
export const IFREQ = {
  size: 40,
  name: 0,
  ifindex: 16,
  mtu: 16,
  flags: 16,
  hwaddrFamily: 16,
  hwaddrData: 18,
} as const;

/** struct sock_filter (8 bytes): u16 code, u8 jt, u8 jf, u32 k. */
export const SOCK_FILTER = { size: 8, code: 0, jt: 2, jf: 3, k: 4 } as const;

/** struct sock_fprog (16 bytes): u16 len, (6 bytes padding), struct sock_filter *filter. */
export const SOCK_FPROG = { size: 16, len: 0, filter: 8 } as const;

/** The fields of struct stat (144 bytes on x86-64) that we read. */
export const STAT = {
  size: 144,
  dev: 0,
  ino: 8,
  nlink: 16,
  mode: 24,
  uid: 28,
  gid: 32,
  rdev: 40,
  stSize: 48,
} as const;

/**
 * struct sockaddr_nl (12 bytes), linux/netlink.h
 * ```
 *  0 u16 nl_family   (AF_NETLINK)
 *  2 u16 nl_pad
 *  4 u32 nl_pid      (port id; 0 = the kernel, or let bind choose one)
 *  8 u32 nl_groups   (multicast group bits, e.g. RTMGRP_LINK)
 * ```
 */
export const SOCKADDR_NL = { size: 12, family: 0, pad: 2, pid: 4, groups: 8 } as const;

/**
 * struct nlmsghdr (16 bytes), at the start of every netlink message; messages follow each other
 * in a datagram at 4-byte aligned offsets (NLMSG_ALIGN(nlmsg_len)).
 * ```
 *  0 u32 nlmsg_len    (header included)
 *  4 u16 nlmsg_type   (NLMSG_ERROR, NLMSG_DONE, RTM_NEWLINK, ...)
 *  6 u16 nlmsg_flags  (NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR, ...)
 *  8 u32 nlmsg_seq
 * 12 u32 nlmsg_pid    (port id of the sender or of the requester)
 * ```
 */
export const NLMSGHDR = { size: 16, len: 0, type: 4, flags: 6, seq: 8, pid: 12 } as const;

/** struct nlmsgerr (20 bytes): i32 error (0 = ACK, else -errno), the request's nlmsghdr. */
export const NLMSGERR = { size: 20, error: 0, msg: 4 } as const;

/**
 * struct ifinfomsg (16 bytes), linux/rtnetlink.h: the body of RTM_NEWLINK/DELLINK/GETLINK,
 * followed by route attributes (struct rtattr) up to nlmsg_len.
 * ```
 *  0 u8  ifi_family   (AF_UNSPEC; AF_BRIDGE for bridge port notifications)
 *  1 u8  __ifi_pad
 *  2 u16 ifi_type     (ARPHRD_ETHER, ARPHRD_LOOPBACK, ...)
 *  4 i32 ifi_index
 *  8 u32 ifi_flags    (IFF_UP, IFF_RUNNING, IFF_LOOPBACK, IFF_LOWER_UP, ...)
 * 12 u32 ifi_change   (which flags changed)
 * ```
 */
export const IFINFOMSG = { size: 16, family: 0, type: 2, index: 4, flags: 8, change: 12 } as const;

/**
 * struct rtattr (4 bytes): u16 rta_len (header included), u16 rta_type; the payload follows,
 * the next attribute starts at RTA_ALIGN(rta_len).
 */
export const RTATTR = { size: 4, len: 0, type: 2 } as const;

/** struct sigaction (152 bytes, glibc x86-64): the handler, the mask, the flags, the restorer. */
export const SIGACTION = { size: 152, handler: 0, mask: 8, flags: 136, restorer: 144 } as const;
