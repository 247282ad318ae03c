/*
 * kaoe.h: what bench/kinit.c and bench/kecho.c share: AoE wire constants, opening a plain
 * AF_PACKET socket the way the Linux aoe driver sees the wire (no TPACKET ring), clocks.
 *
 * The two programs are compiled by bench/bench.ts (gcc -O2 -Wall -Wextra) into bench/.build/.
 */
#ifndef KAOE_H
#define KAOE_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef ETH_P_AOE
#define ETH_P_AOE 0x88a2
#endif
#define AOE_HDR_LEN 24     /* Ethernet + AoE header */
#define AOE_ATA_HDR_LEN 36 /* + ATA header */
#define AOE_CFG_HDR_LEN 32 /* + Query Config header */
#define AOE_MIN_FRAME 60   /* shortest Ethernet frame without FCS */

#define AOE_VERSION 1
#define AOE_FL_RESPONSE 0x08
#define AOE_FL_ERROR 0x04
#define AOE_CMD_ATA 0
#define AOE_CMD_CFG 1
#define AOE_CFG_READ 0
#define AOE_SHELF_BROADCAST 0xffff
#define AOE_SLOT_BROADCAST 0xff

#define AOE_AFL_EXT 0x40
#define AOE_AFL_WRITE 0x01

#define ATA_CMD_READ 0x20
#define ATA_CMD_READ_EXT 0x24
#define ATA_CMD_WRITE 0x30
#define ATA_CMD_WRITE_EXT 0x34
#define ATA_CMD_ID_ATA 0xec
#define ATA_DRDY 0x40
#define ATA_ERR 0x01
#define ATA_ABORTED 0x04

/* Byte offsets from the first byte of the Ethernet frame. */
#define OFF_VER_FLAGS 14
#define OFF_ERROR 15
#define OFF_MAJOR 16
#define OFF_MINOR 18
#define OFF_COMMAND 19
#define OFF_TAG 20
#define OFF_AFLAGS 24
#define OFF_ERR_FEATURE 25
#define OFF_SECTOR_COUNT 26
#define OFF_CMD_STATUS 27
#define OFF_LBA 28
#define OFF_CFG_BUFCNT 24
#define OFF_CFG_FIRMWARE 26
#define OFF_CFG_SCNT 28
#define OFF_CFG_VER_CCMD 29
#define OFF_CFG_STRLEN 30

#define SECTOR 512

static inline uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put16(unsigned char *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static inline void put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

/* The 48-bit LBA of an ATA header (little-endian bytes 28..33); LBA28 when ext is 0. */
static inline uint64_t ata_lba(const unsigned char *f)
{
	const unsigned char *l = f + OFF_LBA;
	if (!(f[OFF_AFLAGS] & AOE_AFL_EXT))
		return (uint64_t)l[0] | (uint64_t)l[1] << 8 | (uint64_t)l[2] << 16 |
		       (uint64_t)(l[3] & 0x0f) << 24;
	return (uint64_t)l[0] | (uint64_t)l[1] << 8 | (uint64_t)l[2] << 16 | (uint64_t)l[3] << 24 |
	       (uint64_t)l[4] << 32 | (uint64_t)l[5] << 40;
}

/** A bound AF_PACKET socket on one interface. */
struct link {
	int fd;
	int ifindex;
	int mtu;
	unsigned char mac[6];
	char name[IF_NAMESIZE];
};

static void die(const char *what, const char *why, const char *fix)
{
	fprintf(stderr, "%s: %s%s%s\n", what, why, fix ? " — " : "", fix ? fix : "");
	exit(1);
}

/*
 * Opens a SOCK_RAW packet socket for ethertype 0x88A2 bound to `ifname`, with `bufbytes` of
 * receive and send buffer (SO_*BUFFORCE, so that a window of jumbo frames is not dropped by the
 * default 208 KiB), and `tick_ms` as SO_RCVTIMEO (a blocking receive returns at least that often).
 */
static void link_open(struct link *l, const char *ifname, int bufbytes, int tick_ms)
{
	struct ifreq ifr;
	struct sockaddr_ll sll;
	char what[64];

	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", ifname);
	snprintf(what, sizeof(what), "%s", ifname);
	l->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_AOE));
	if (l->fd < 0)
		die("socket(AF_PACKET)", strerror(errno), "run as root or grant CAP_NET_RAW");
	l->ifindex = (int)if_nametoindex(ifname);
	if (l->ifindex == 0)
		die(what, "no such interface", "check the name with `ip link`");
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(l->fd, SIOCGIFHWADDR, &ifr) < 0)
		die(what, strerror(errno), "SIOCGIFHWADDR failed");
	memcpy(l->mac, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(l->fd, SIOCGIFMTU, &ifr) < 0)
		die(what, strerror(errno), "SIOCGIFMTU failed");
	l->mtu = ifr.ifr_mtu;
	if (setsockopt(l->fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufbytes, sizeof(bufbytes)) < 0)
		setsockopt(l->fd, SOL_SOCKET, SO_RCVBUF, &bufbytes, sizeof(bufbytes));
	if (setsockopt(l->fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufbytes, sizeof(bufbytes)) < 0)
		setsockopt(l->fd, SOL_SOCKET, SO_SNDBUF, &bufbytes, sizeof(bufbytes));
	if (tick_ms > 0) {
		struct timeval tv = { .tv_sec = tick_ms / 1000, .tv_usec = (tick_ms % 1000) * 1000 };
		setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_AOE);
	sll.sll_ifindex = l->ifindex;
	if (bind(l->fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		die(what, strerror(errno), "bind(AF_PACKET) failed");
	/* Frames of other interfaces may have queued before bind(): drop them. */
	for (;;) {
		unsigned char b[64];
		if (recv(l->fd, b, sizeof(b), MSG_DONTWAIT | MSG_TRUNC) < 0)
			break;
	}
}

static inline void put_eth(unsigned char *f, const unsigned char *dst, const unsigned char *src)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	put16(f + 12, ETH_P_AOE);
}

#endif
