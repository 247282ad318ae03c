/**
 * Linux x86-64 constants, with the kernel's and libc's names so that they grep to the headers.
 * tests/ffi/structs_test.ts checks them against the C headers.
 *
 * @module
 */

// open(2) / fcntl(2)
export const O_RDONLY = 0;
export const O_RDWR = 0o2;
export const O_EXCL = 0o200;
export const O_NOFOLLOW = 0o400000;
export const O_NONBLOCK = 0o4000;
export const O_DIRECT = 0o40000;
export const O_DSYNC = 0o10000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_DUPFD_CLOEXEC = 1030;

// struct stat st_mode
export const S_IFMT = 0o170000;
export const S_IFBLK = 0o060000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;

/** ioctl: u64 size in bytes of a block device. */
export const BLKGETSIZE64 = 0x80081272;

// mmap(2)
export const PROT_READ = 1;
export const PROT_EXEC = 4;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const SIGBUS = 7;
export const SA_SIGINFO = 4;
export const MAP_ANONYMOUS = 0x20;

// socket(2)
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_NETLINK = 16;
export const AF_PACKET = 17;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_ATTACH_FILTER = 26;
export const SO_ERROR = 4;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
/** Receive timestamps (struct timespec, CLOCK_REALTIME) as SCM_TIMESTAMPNS control messages. */
export const SO_TIMESTAMPNS = 35;
export const SCM_TIMESTAMPNS = 35;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;

// linux/if_packet.h
export const SOL_PACKET = 263;
export const PACKET_RX_RING = 5;
export const PACKET_STATISTICS = 6;
export const PACKET_VERSION = 10;
export const PACKET_HDRLEN = 11;
export const PACKET_TX_RING = 13;
export const PACKET_LOSS = 14;
export const TPACKET_V2 = 1;
export const TP_STATUS_KERNEL = 0;
export const TP_STATUS_USER = 1;
export const TP_STATUS_LOSING = 4;
export const TP_STATUS_AVAILABLE = 0;
export const TP_STATUS_SEND_REQUEST = 1;
export const TP_STATUS_WRONG_FORMAT = 4;

/** The AoE ethertype. */
export const ETH_P_AOE = 0x88a2;
/** Minimum Ethernet frame length without FCS: shorter frames are padded with zeros. */
export const ETH_ZLEN = 60;
/** Ethernet header length. */
export const ETH_HLEN = 14;

// net/if.h, linux/sockios.h, net/if_arp.h
export const IFNAMSIZ = 16;
export const SIOCGIFFLAGS = 0x8913;
export const SIOCGIFMTU = 0x8921;
export const SIOCGIFHWADDR = 0x8927;
export const SIOCGIFINDEX = 0x8933;
export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;
export const IFF_RUNNING = 0x40;
export const IFF_LOWER_UP = 0x10000;
export const ARPHRD_ETHER = 1;
export const ARPHRD_LOOPBACK = 772;

// linux/netlink.h, linux/rtnetlink.h, linux/if_link.h
export const NETLINK_ROUTE = 0;
/** Multicast group bit (bind's nl_groups) of link notifications. */
export const RTMGRP_LINK = 0x1;
export const NLMSG_ALIGNTO = 4;
export const NLMSG_HDRLEN = 16;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_DUMP = 0x300;
/** A dump reply flag: the table changed while it was being dumped; dump again. */
export const NLM_F_DUMP_INTR = 0x10;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTA_ALIGNTO = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;

// classic BPF (linux/filter.h)
export const BPF_LD = 0x00;
export const BPF_W = 0x00;
export const BPF_LEN = 0x80;
export const BPF_JGE = 0x30;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_H = 0x08;
export const BPF_B = 0x10;
export const BPF_ABS = 0x20;
export const BPF_AND = 0x50;
export const BPF_JEQ = 0x10;
export const BPF_K = 0x00;

// sys/epoll.h
export const EPOLL_CLOEXEC = 0o2000000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
/** Readable. */
export const EPOLLIN = 0x001;
/** Writable (for a packet socket with a TX ring: a TX frame is free). */
export const EPOLLOUT = 0x004;
/** Error condition (always reported). */
export const EPOLLERR = 0x008;
/** Hang up (always reported). */
export const EPOLLHUP = 0x010;

// sys/eventfd.h, sys/timerfd.h
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const TFD_CLOEXEC = 0o2000000;
export const TFD_NONBLOCK = 0o4000;
export const CLOCK_REALTIME = 0;
export const CLOCK_MONOTONIC = 1;

// linux/aio_abi.h, and the x86-64 system call numbers
export const IOCB_CMD_PREAD = 0;
export const IOCB_CMD_PWRITE = 1;
export const IOCB_CMD_FSYNC = 2;
export const IOCB_CMD_FDSYNC = 3;
export const IOCB_CMD_NOOP = 6;
export const IOCB_CMD_PREADV = 7;
export const IOCB_CMD_PWRITEV = 8;
export const IOCB_FLAG_RESFD = 1;
export const SYS_io_setup = 206;
export const SYS_io_destroy = 207;
export const SYS_io_getevents = 208;
export const SYS_io_submit = 209;
