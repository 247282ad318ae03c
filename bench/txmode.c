/*
 * txmode: what one reply costs the sender to transmit over a link, with a TPACKET_V2 TX ring
 * (frames written into the mapped ring, one send(fd, NULL, 0) kick per batch of 32) against
 * sendmmsg (a batch of 32 messages from user buffers), for `deno task bench --tx-modes`.
 *
 *   txmode send ring|mmsg IFACE COUNT SIZE     sends COUNT frames of SIZE bytes; prints one JSON
 *                                              line: CPU microseconds per frame, wall time
 *   txmode recv IFACE                          counts frames until 2 s of silence
 *
 * The frames are AoE responses (ethertype 0x88A2, R flag) to the broadcast address; the
 * receiver on the other end of the link reads them with recvmmsg, as an initiator would. On veth
 * the kernel copies a ring frame into a new page when it forwards it (the ring's pages cannot be
 * handed over), and sendmmsg copies from user memory into the socket buffer: both copy once; the
 * measurement says which path costs less around that copy. On a NIC that can DMA from the ring's
 * pages the ring saves the copy as well.
 *
 * Build: gcc -O2 -Wall -Wextra -o txmode txmode.c (bench/bench.ts does it).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define FRAME_MAX 16384
#define ETH_P_AOE 0x88a2

static double cpu_seconds(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int open_socket(const char *ifname) {
  int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_AOE));
  if (fd < 0) {
    perror("socket(AF_PACKET)");
    exit(1);
  }
  struct sockaddr_ll sll = {0};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_AOE);
  sll.sll_ifindex = (int)if_nametoindex(ifname);
  if (sll.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
    perror(ifname);
    exit(1);
  }
  return fd;
}

static int receive(const char *ifname) {
  int fd = open_socket(ifname);
  int big = 64 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  static unsigned char bufs[64][FRAME_MAX];
  struct mmsghdr m[64];
  struct iovec io[64];
  for (int i = 0; i < 64; i++) {
    io[i] = (struct iovec){bufs[i], FRAME_MAX};
    memset(&m[i], 0, sizeof m[i]);
    m[i].msg_hdr.msg_iov = &io[i];
    m[i].msg_hdr.msg_iovlen = 1;
  }
  long frames = 0;
  for (;;) {
    int n = recvmmsg(fd, m, 64, MSG_WAITFORONE, NULL);
    if (n <= 0) break;
    frames += n;
  }
  printf("{\"received\":%ld}\n", frames);
  return 0;
}

static int transmit(int ring, const char *ifname, long count, int size) {
  if (size < 60 || size > FRAME_MAX) {
    fprintf(stderr, "txmode: SIZE must be 60..%d\n", FRAME_MAX);
    return 2;
  }
  int fd = open_socket(ifname);
  unsigned char frame[FRAME_MAX];
  memset(frame, 0xab, sizeof frame);
  memset(frame, 0xff, 6);
  frame[12] = ETH_P_AOE >> 8;
  frame[13] = ETH_P_AOE & 0xff;
  frame[14] = 0x18; /* version 1, response */
  double c0 = cpu_seconds(), t0 = now();
  if (ring) {
    int v = TPACKET_V2, loss = 1;
    setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
    setsockopt(fd, SOL_PACKET, PACKET_LOSS, &loss, sizeof loss);
    unsigned frame_size = FRAME_MAX;
    struct tpacket_req req = {65536 * 4, 64, frame_size, (65536 * 4 / frame_size) * 64};
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) != 0) {
      perror("PACKET_TX_RING");
      return 1;
    }
    size_t length = (size_t)req.tp_block_size * req.tp_block_nr;
    unsigned char *map = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      perror("mmap");
      return 1;
    }
    unsigned index = 0;
    for (long sent = 0; sent < count;) {
      int b = 0;
      for (; b < BATCH && sent + b < count; b++) {
        struct tpacket2_hdr *h = (void *)(map + (size_t)index * frame_size);
        while (h->tp_status != TP_STATUS_AVAILABLE && h->tp_status != TP_STATUS_WRONG_FORMAT) {
          send(fd, NULL, 0, MSG_DONTWAIT);
        }
        memcpy((unsigned char *)h + 32, frame, (size_t)size);
        h->tp_len = (unsigned)size;
        __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
        index = (index + 1) % req.tp_frame_nr;
      }
      if (send(fd, NULL, 0, MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != ENOBUFS) {
        perror("send(kick)");
        return 1;
      }
      sent += b;
    }
  } else {
    static unsigned char bufs[BATCH][FRAME_MAX];
    struct mmsghdr m[BATCH];
    struct iovec io[BATCH];
    for (int i = 0; i < BATCH; i++) {
      io[i] = (struct iovec){bufs[i], (size_t)size};
      memset(&m[i], 0, sizeof m[i]);
      m[i].msg_hdr.msg_iov = &io[i];
      m[i].msg_hdr.msg_iovlen = 1;
    }
    for (long sent = 0; sent < count;) {
      int b = count - sent < BATCH ? (int)(count - sent) : BATCH;
      for (int i = 0; i < b; i++) memcpy(bufs[i], frame, (size_t)size); /* as the ring's fill */
      for (int off = 0; off < b;) {
        int n = sendmmsg(fd, m + off, (unsigned)(b - off), 0);
        if (n < 0) {
          if (errno == ENOBUFS || errno == EAGAIN) continue;
          perror("sendmmsg");
          return 1;
        }
        off += n;
      }
      sent += b;
    }
  }
  double c1 = cpu_seconds(), t1 = now();
  printf("{\"mode\":\"%s\",\"size\":%d,\"frames\":%ld,\"cpuUsPerFrame\":%.4f,\"wallUsPerFrame\":%.4f}\n",
         ring ? "ring" : "sendmmsg", size, count, (c1 - c0) * 1e6 / (double)count,
         (t1 - t0) * 1e6 / (double)count);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return receive(argv[2]);
  if (argc == 6 && strcmp(argv[1], "send") == 0) {
    return transmit(strcmp(argv[2], "ring") == 0, argv[3], atol(argv[4]), atoi(argv[5]));
  }
  fprintf(stderr, "usage: txmode send ring|mmsg IFACE COUNT SIZE | txmode recv IFACE\n");
  return 2;
}
