/*
 * kinit: an AoE initiator that sees the wire the way the Linux aoe driver does, for
 * `deno task bench`.
 *
 * The kernel's driver receives frames as socket buffers in a packet handler (no ring) and
 * sends them through the device queue; a waiter sleeps until the softirq wakes it. kinit does the
 * same from user space with one plain AF_PACKET SOCK_RAW socket bound to the interface and to
 * ethertype 0x88A2: no TPACKET ring, no busy polling. Each turn of its loop is two system calls
 * whatever the batch size: one recvmmsg that blocks until at least one reply is there and then
 * takes every reply queued (MSG_WAITFORONE), and one sendmmsg with a new request for every slot
 * those replies freed. A window of W requests (tags) stays outstanding; a request unanswered after
 * --rto-ms is sent again under a new tag (the kernel does the same) and counted.
 *
 * Discovery is a Query Config broadcast; the answer gives the target's MAC, Buffer Count and
 * the most sectors per request, which (with the MTU) sets the request size; ATA IDENTIFY gives
 * the capacity. Then a warm-up, then the timed measurement, then the outstanding requests are
 * drained (not counted). Output: one JSON object on stdout; errors and markers on stderr.
 *
 * Workloads: seq-read and seq-write (the largest request the MTU and target allow), rand-read
 * and mixed (4 KiB, or the largest request if smaller: at MTU 1500 a request carries 1 KiB, and
 * the output says so), verify (random 4 KiB reads and writes; every write stamps each sector with
 * its LBA and a version, every read of a sector written in this run is checked).
 *
 *   kinit -i IFACE [--workload rand-read] [--window 32] [--seconds 5] [--warmup 0.5] ...
 *   kinit --help
 *
 * Build: gcc -O2 -Wall -Wextra -o kinit kinit.c (bench/bench.ts does it).
 */
#include "kaoe.h"

#include <dirent.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdarg.h>
#include <sys/resource.h>

#define MAX_WINDOW 4096
#define SLOT_BITS 12
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_WATCH_THREADS 512

static const char USAGE[] =
	"kinit -i IFACE [options]: a kernel-like AoE initiator (plain packet socket, batched\n"
	"sendmmsg/recvmmsg, no ring); prints one JSON object on stdout.\n"
	"\n"
	"  -i, --iface IF         interface towards the target (required)\n"
	"  --shelf N --slot N     target address (default: the first target that answers)\n"
	"  -w, --workload W       seq-read | seq-write | rand-read | mixed | verify (rand-read)\n"
	"  --io-bytes N           bytes per request (default 4096 for rand-read, mixed and verify,\n"
	"                         the largest request for seq-*); never above the largest request\n"
	"  --window N             requests outstanding (default 32, at most 4096)\n"
	"  --seconds S            measured seconds (default 5)\n"
	"  --requests N           end the measured window once N requests are answered (or after\n"
	"                         --seconds, whichever comes first): a window defined by work\n"
	"                         done, the same on a busy machine as on an idle one\n"
	"  --warmup S             warm-up seconds before the measurement (default 0.5)\n"
	"  --read-percent P       share of reads in mixed (default 70) and verify (default 50)\n"
	"  --rto-ms N             retransmit a request unanswered this long (default 200)\n"
	"  --retries N            sends per request before it fails (default 8)\n"
	"  --batch N              most frames per recvmmsg (default: the window)\n"
	"  --region SECTORS       sectors addressed from LBA 0 (default: the capacity)\n"
	"  --seed N               random seed (default 1)\n"
	"  --start-at MS          start the warm-up at this CLOCK_REALTIME (ms since the epoch), so\n"
	"                         that several initiators measure the same seconds\n"
	"  --watch PID[,PID..]    also report CPU time and context switches of every thread of these\n"
	"                         processes over the measured window (from /proc/PID/task/*)\n"
	"  --perf-fifo CTL[,ACK]  write enable/disable to this `perf stat --control fifo:CTL[,ACK]`\n"
	"                         at the edges of the measured window (and wait for perf's ack)\n"
	"  --discover-ms N        how long to look for the target (default 3000)\n"
	"  --rx-ring              receive through a TPACKET_V2 RX ring (poll when it is empty)\n"
	"                         instead of recvmmsg: not how the kernel receives; for comparing\n"
	"                         what a ring reader costs the sender\n"
	"  -h, --help             this text\n"
	"\n"
	"Markers on stderr: \"kinit: measuring\" and \"kinit: measured\" at the window's edges.\n";

enum workload { SEQ_READ, SEQ_WRITE, RAND_READ, MIXED, VERIFY };
static const char *const WORKLOAD_NAMES[] = { "seq-read", "seq-write", "rand-read", "mixed",
					      "verify" };

struct options {
	const char *iface;
	int shelf, slot;
	enum workload workload;
	long io_bytes;
	int window;
	double seconds, warmup;
	uint64_t requests;
	int read_percent;
	int rto_ms, retries, batch;
	uint64_t region;
	uint64_t seed;
	double start_at_ms;
	const char *watch;
	const char *perf_fifo;
	int discover_ms;
	int rx_ring;
};

struct target {
	unsigned char mac[6];
	int shelf, slot;
	int buffer_count, firmware, cfg_sectors, aoe_version;
	int max_sectors;
	uint64_t capacity;
	int lba48;
	char model[41];
};

struct slot {
	uint32_t tag;
	uint8_t busy, write, tries;
	uint16_t count;
	uint64_t lba;
	uint64_t first_ns, sent_ns;
	uint32_t unit, version;
	unsigned char hdr[AOE_ATA_HDR_LEN];
	unsigned char *wbuf; /* verify: this slot's write data */
};

/* Counters of one phase (warm-up, measurement, drain). */
struct counters {
	uint64_t requests, reads, writes, bytes;
	uint64_t retransmits, errors, stale, send_errors;
	uint64_t send_calls, recv_calls, recv_empty, frames_in;
	uint64_t checked, mismatches, unverified;
};

struct thread_sample {
	int pid, tid;
	char comm[32];
	uint64_t cpu_ns, voluntary, involuntary;
};

struct watch_snapshot {
	int n;
	struct thread_sample t[MAX_WATCH_THREADS];
};

static volatile sig_atomic_t stop_requested;
static char first_error[256];

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...)
{
	va_list ap;
	if (first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(first_error, sizeof(first_error), fmt, ap);
	va_end(ap);
}

/* xorshift64*: offsets and write data. */
static uint64_t rng_state;
static inline uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}
static inline uint64_t below(uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rnd() * n) >> 64);
}

/* Verify pattern: 8-byte word k of sector `lba` written with `version`. */
static inline uint64_t pattern_word(uint64_t lba, uint32_t version, unsigned k)
{
	uint64_t z = (lba << 20 | k) ^ ((uint64_t)version * 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void fill_pattern(unsigned char *buf, uint64_t lba, unsigned sectors, uint32_t version)
{
	for (unsigned s = 0; s < sectors; s++)
		for (unsigned k = 0; k < SECTOR / 8; k++) {
			uint64_t w = pattern_word(lba + s, version, k);
			memcpy(buf + s * SECTOR + k * 8, &w, 8);
		}
}

/* Index of the first sector of `buf` that differs from the pattern, or -1. */
static int check_pattern(const unsigned char *buf, uint64_t lba, unsigned sectors, uint32_t version)
{
	for (unsigned s = 0; s < sectors; s++)
		for (unsigned k = 0; k < SECTOR / 8; k++) {
			uint64_t w = pattern_word(lba + s, version, k), got;
			memcpy(&got, buf + s * SECTOR + k * 8, 8);
			if (got != w)
				return (int)s;
		}
	return -1;
}

/* --- Discovery and IDENTIFY ------------------------------------------------------------- */

static void put_request_header(unsigned char *f, const struct link *l, const unsigned char *dst,
			       int shelf, int slot, int command, uint32_t tag)
{
	put_eth(f, dst, l->mac);
	f[OFF_VER_FLAGS] = AOE_VERSION << 4;
	f[OFF_ERROR] = 0;
	put16(f + OFF_MAJOR, (uint16_t)shelf);
	f[OFF_MINOR] = (unsigned char)slot;
	f[OFF_COMMAND] = (unsigned char)command;
	put32(f + OFF_TAG, tag);
}

/* Waits up to `ms` for one frame; returns its length, 0 on timeout. */
static ssize_t receive_within(int fd, unsigned char *buf, size_t size, int ms)
{
	uint64_t deadline = mono_ns() + (uint64_t)ms * 1000000ull;
	for (;;) {
		ssize_t n = recv(fd, buf, size, MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (mono_ns() >= deadline || stop_requested)
			return 0;
		usleep(1000);
	}
}

static void discover(const struct link *l, const struct options *o, struct target *t)
{
	static const unsigned char broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	unsigned char req[AOE_MIN_FRAME], buf[16384];
	uint64_t deadline = mono_ns() + (uint64_t)o->discover_ms * 1000000ull;

	memset(req, 0, sizeof(req));
	put_request_header(req, l, broadcast, o->shelf >= 0 ? o->shelf : AOE_SHELF_BROADCAST,
			   o->slot >= 0 ? o->slot : AOE_SLOT_BROADCAST, AOE_CMD_CFG, 0x4b494e49);
	while (mono_ns() < deadline && !stop_requested) {
		if (send(l->fd, req, sizeof(req), 0) < 0)
			die("send(Query Config)", strerror(errno), "is the interface up?");
		uint64_t resend = mono_ns() + 200000000ull;
		while (mono_ns() < resend) {
			ssize_t n = receive_within(l->fd, buf, sizeof(buf), 50);
			if (n < AOE_CFG_HDR_LEN || !(buf[OFF_VER_FLAGS] & AOE_FL_RESPONSE) ||
			    buf[OFF_COMMAND] != AOE_CMD_CFG || (buf[OFF_VER_FLAGS] & AOE_FL_ERROR))
				continue;
			int shelf = get16(buf + OFF_MAJOR), slot = buf[OFF_MINOR];
			if ((o->shelf >= 0 && shelf != o->shelf) || (o->slot >= 0 && slot != o->slot))
				continue;
			memcpy(t->mac, buf + 6, 6);
			t->shelf = shelf;
			t->slot = slot;
			t->buffer_count = get16(buf + OFF_CFG_BUFCNT);
			t->firmware = get16(buf + OFF_CFG_FIRMWARE);
			t->cfg_sectors = buf[OFF_CFG_SCNT];
			t->aoe_version = buf[OFF_CFG_VER_CCMD] >> 4;
			/* As aoecmd_cfg_rsp: what the MTU allows, capped by the target's count. */
			int n_mtu = (l->mtu - AOE_ATA_HDR_LEN) / SECTOR;
			int most = n_mtu < t->cfg_sectors || t->cfg_sectors == 0 ? n_mtu : t->cfg_sectors;
			t->max_sectors = most > 0 ? most : 2;
			if (t->max_sectors > 255)
				t->max_sectors = 255;
			return;
		}
	}
	char want[64];
	snprintf(want, sizeof(want), "e%d.%d", o->shelf, o->slot);
	fprintf(stderr, "kinit: no AoE target %s answered Query Config on %s within %d ms\n",
		o->shelf >= 0 || o->slot >= 0 ? want : "(any)", l->name, o->discover_ms);
	exit(1);
}

static void identify(const struct link *l, struct target *t)
{
	unsigned char req[AOE_MIN_FRAME], buf[16384];
	for (int attempt = 0; attempt < 5 && !stop_requested; attempt++) {
		uint32_t tag = 0x49440000u | (uint32_t)attempt;
		memset(req, 0, sizeof(req));
		put_request_header(req, l, t->mac, t->shelf, t->slot, AOE_CMD_ATA, tag);
		req[OFF_SECTOR_COUNT] = 1;
		req[OFF_CMD_STATUS] = ATA_CMD_ID_ATA;
		if (send(l->fd, req, sizeof(req), 0) < 0)
			die("send(IDENTIFY)", strerror(errno), "is the interface up?");
		uint64_t deadline = mono_ns() + 500000000ull;
		while (mono_ns() < deadline) {
			ssize_t n = receive_within(l->fd, buf, sizeof(buf), 50);
			if (n < AOE_ATA_HDR_LEN || !(buf[OFF_VER_FLAGS] & AOE_FL_RESPONSE) ||
			    buf[OFF_COMMAND] != AOE_CMD_ATA || get32(buf + OFF_TAG) != tag)
				continue;
			if ((buf[OFF_VER_FLAGS] & AOE_FL_ERROR) || (buf[OFF_CMD_STATUS] & ATA_ERR) ||
			    n < AOE_ATA_HDR_LEN + SECTOR) {
				fprintf(stderr, "kinit: IDENTIFY DEVICE failed (AoE error %d, status 0x%02x)\n",
					buf[OFF_ERROR], buf[OFF_CMD_STATUS]);
				exit(1);
			}
			const unsigned char *id = buf + AOE_ATA_HDR_LEN;
#define WORD(i) ((uint64_t)id[2 * (i)] | (uint64_t)id[2 * (i) + 1] << 8)
			t->lba48 = (WORD(83) >> 10) & 1;
			t->capacity = t->lba48 ? WORD(100) | WORD(101) << 16 | WORD(102) << 32 |
							 WORD(103) << 48
					       : WORD(60) | WORD(61) << 16;
			for (int i = 0; i < 20; i++) { /* model: words 27..46, bytes swapped */
				t->model[2 * i] = (char)id[54 + 2 * i + 1];
				t->model[2 * i + 1] = (char)id[54 + 2 * i];
			}
#undef WORD
			t->model[40] = 0;
			for (int i = 39; i >= 0 && t->model[i] == ' '; i--)
				t->model[i] = 0;
			return;
		}
	}
	fprintf(stderr, "kinit: e%d.%d did not answer IDENTIFY DEVICE on %s\n", t->shelf, t->slot,
		l->name);
	exit(1);
}

/* --- Watching the target's threads ---------------------------------------------------- */

static int watch_pids[64], nwatch;

static uint64_t status_field(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static void snapshot(struct watch_snapshot *s)
{
	char path[128], text[4096];
	s->n = 0;
	for (int i = 0; i < nwatch; i++) {
		snprintf(path, sizeof(path), "/proc/%d/task", watch_pids[i]);
		DIR *d = opendir(path);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) && s->n < MAX_WATCH_THREADS) {
			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			struct thread_sample *t = &s->t[s->n];
			memset(t, 0, sizeof(*t));
			t->pid = watch_pids[i];
			t->tid = atoi(e->d_name);
			FILE *f;
			snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", t->pid, t->tid);
			if (!(f = fopen(path, "r")))
				continue;
			unsigned long long ns = 0;
			if (fscanf(f, "%llu", &ns) != 1)
				ns = 0;
			fclose(f);
			t->cpu_ns = ns;
			snprintf(path, sizeof(path), "/proc/%d/task/%d/status", t->pid, t->tid);
			if (!(f = fopen(path, "r")))
				continue;
			size_t n = fread(text, 1, sizeof(text) - 1, f);
			fclose(f);
			text[n] = 0;
			t->voluntary = status_field(text, "voluntary_ctxt_switches:");
			t->involuntary = status_field(text, "nonvoluntary_ctxt_switches:");
			const char *name = strstr(text, "Name:");
			if (name) {
				name += 5;
				while (*name == '\t' || *name == ' ')
					name++;
				size_t len = strcspn(name, "\n");
				if (len >= sizeof(t->comm))
					len = sizeof(t->comm) - 1;
				memcpy(t->comm, name, len);
				t->comm[len] = 0;
			}
			s->n++;
		}
		closedir(d);
	}
}

/* --- Optional TPACKET_V2 RX ring (--rx-ring) -------------------------------------------- */

struct rx_ring {
	unsigned char *map;
	size_t frame_size;
	unsigned nframes, head;
};

static void rx_ring_open(struct rx_ring *r, const struct link *l)
{
	int version = TPACKET_V2;
	struct tpacket_req req;
	r->frame_size = l->mtu + 14 + TPACKET2_HDRLEN + 64 > 4096 ? 16384 : 4096;
	memset(&req, 0, sizeof(req));
	req.tp_block_size = 1 << 20;
	req.tp_block_nr = 8;
	req.tp_frame_size = (unsigned)r->frame_size;
	req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
	if (setsockopt(l->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) < 0 ||
	    setsockopt(l->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
		die("PACKET_RX_RING", strerror(errno), NULL);
	r->map = mmap(NULL, (size_t)req.tp_block_size * req.tp_block_nr, PROT_READ | PROT_WRITE,
		      MAP_SHARED, l->fd, 0);
	if (r->map == MAP_FAILED)
		die("mmap(PACKET_RX_RING)", strerror(errno), NULL);
	r->nframes = req.tp_frame_nr;
	r->head = 0;
}

static inline struct tpacket2_hdr *rx_frame(const struct rx_ring *r, unsigned i)
{
	return (struct tpacket2_hdr *)(r->map + (size_t)(i % r->nframes) * r->frame_size);
}

/* Points riov/rmsg at up to `max` frames the kernel has filled; returns how many. */
static int rx_ring_take(const struct rx_ring *r, struct iovec *riov, struct mmsghdr *rmsg, int max)
{
	int n = 0;
	while (n < max) {
		struct tpacket2_hdr *h = rx_frame(r, r->head + (unsigned)n);
		if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
			break;
		riov[n].iov_base = (unsigned char *)h + h->tp_mac;
		rmsg[n].msg_len = h->tp_snaplen;
		n++;
	}
	return n;
}

/* Hands `n` frames back to the kernel. */
static void rx_ring_release(struct rx_ring *r, int n)
{
	for (int i = 0; i < n; i++) {
		__atomic_store_n(&rx_frame(r, r->head)->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
		r->head = (r->head + 1) % r->nframes;
	}
}

/* --- perf stat control and machine load -------------------------------------------------- */

static FILE *perf_ctl, *perf_ack;

static void perf_command(const char *cmd)
{
	char line[16];
	if (!perf_ctl)
		return;
	fputs(cmd, perf_ctl);
	fflush(perf_ctl);
	if (perf_ack && !fgets(line, sizeof(line), perf_ack))
		perf_ack = NULL; /* perf went away: stop waiting for it */
}

static void perf_open(const char *spec)
{
	char *copy = strdup(spec), *comma = strchr(copy, ',');
	if (comma)
		*comma++ = 0;
	if (!(perf_ctl = fopen(copy, "w")))
		die(copy, strerror(errno), "the perf control fifo could not be opened");
	if (comma && !(perf_ack = fopen(comma, "r")))
		die(comma, strerror(errno), "the perf ack fifo could not be opened");
	free(copy);
}

/* Busy seconds of the whole machine (every core; /proc/stat minus idle and iowait). */
static double machine_busy_seconds(void)
{
	unsigned long long v[8] = { 0 };
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return 0;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		       &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return 0;
	unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

/* --- Output ---------------------------------------------------------------------------- */

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double percentile_ms(const uint32_t *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)(q * (double)n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1] / 1e6;
}

/* --- Main ------------------------------------------------------------------------------ */

static double number(const char *s, const char *flag, double min)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == 0 || *end != 0 || !(v >= min)) {
		fprintf(stderr, "kinit: %s needs a number >= %g, got \"%s\"\n", flag, min, s);
		exit(2);
	}
	return v;
}

static void parse(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{ "iface", required_argument, 0, 'i' },	   { "shelf", required_argument, 0, 1 },
		{ "slot", required_argument, 0, 2 },	   { "workload", required_argument, 0, 'w' },
		{ "io-bytes", required_argument, 0, 3 },   { "window", required_argument, 0, 4 },
		{ "seconds", required_argument, 0, 5 },	   { "warmup", required_argument, 0, 6 },
		{ "read-percent", required_argument, 0, 7 }, { "rto-ms", required_argument, 0, 8 },
		{ "retries", required_argument, 0, 9 },	   { "batch", required_argument, 0, 10 },
		{ "region", required_argument, 0, 11 },	   { "seed", required_argument, 0, 12 },
		{ "start-at", required_argument, 0, 13 },  { "watch", required_argument, 0, 14 },
		{ "perf-fifo", required_argument, 0, 15 }, { "discover-ms", required_argument, 0, 16 },
		{ "rx-ring", no_argument, 0, 17 },	   { "requests", required_argument, 0, 18 },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->shelf = o->slot = -1;
	o->workload = RAND_READ;
	o->window = 32;
	o->seconds = 5;
	o->warmup = 0.5;
	o->read_percent = -1;
	o->rto_ms = 200;
	o->retries = 8;
	o->seed = 1;
	o->discover_ms = 3000;
	int c;
	while ((c = getopt_long(argc, argv, "i:w:h", longs, NULL)) != -1) {
		switch (c) {
		case 'i': o->iface = optarg; break;
		case 1: o->shelf = (int)number(optarg, "--shelf", 0); break;
		case 2: o->slot = (int)number(optarg, "--slot", 0); break;
		case 'w': {
			int found = 0;
			for (unsigned i = 0; i < sizeof(WORKLOAD_NAMES) / sizeof(*WORKLOAD_NAMES); i++)
				if (!strcmp(optarg, WORKLOAD_NAMES[i])) {
					o->workload = (enum workload)i;
					found = 1;
				}
			if (!found) {
				fprintf(stderr, "kinit: unknown workload \"%s\" (seq-read, seq-write, "
						"rand-read, mixed, verify)\n", optarg);
				exit(2);
			}
			break;
		}
		case 3: o->io_bytes = (long)number(optarg, "--io-bytes", 512); break;
		case 4: o->window = (int)number(optarg, "--window", 1); break;
		case 5: o->seconds = number(optarg, "--seconds", 0.001); break;
		case 6: o->warmup = number(optarg, "--warmup", 0); break;
		case 7: o->read_percent = (int)number(optarg, "--read-percent", 0); break;
		case 8: o->rto_ms = (int)number(optarg, "--rto-ms", 1); break;
		case 9: o->retries = (int)number(optarg, "--retries", 1); break;
		case 10: o->batch = (int)number(optarg, "--batch", 1); break;
		case 11: o->region = (uint64_t)number(optarg, "--region", 1); break;
		case 12: o->seed = (uint64_t)number(optarg, "--seed", 0); break;
		case 13: o->start_at_ms = number(optarg, "--start-at", 0); break;
		case 14: o->watch = optarg; break;
		case 15: o->perf_fifo = optarg; break;
		case 16: o->discover_ms = (int)number(optarg, "--discover-ms", 1); break;
		case 17: o->rx_ring = 1; break;
		case 18: o->requests = (uint64_t)number(optarg, "--requests", 1); break;
		case 'h': fputs(USAGE, stdout); exit(0);
		default: fputs(USAGE, stderr); exit(2);
		}
	}
	if (!o->iface || optind != argc) {
		fputs(USAGE, stderr);
		exit(2);
	}
	if (o->window > MAX_WINDOW) {
		fprintf(stderr, "kinit: --window %d is above %d\n", o->window, MAX_WINDOW);
		exit(2);
	}
	if (o->io_bytes % SECTOR) {
		fprintf(stderr, "kinit: --io-bytes %ld is not a multiple of 512\n", o->io_bytes);
		exit(2);
	}
	if (o->read_percent > 100) {
		fprintf(stderr, "kinit: --read-percent %d is above 100\n", o->read_percent);
		exit(2);
	}
	if (o->read_percent < 0)
		o->read_percent = o->workload == VERIFY ? 50 : 70;
	if (o->batch == 0)
		o->batch = o->window;
	if (o->watch) {
		char *copy = strdup(o->watch), *save = NULL;
		for (char *p = strtok_r(copy, ",", &save); p && nwatch < 64;
		     p = strtok_r(NULL, ",", &save))
			watch_pids[nwatch++] = (int)number(p, "--watch", 1);
		free(copy);
	}
}

int main(int argc, char **argv)
{
	struct options o;
	struct link l;
	struct target t;

	parse(argc, argv, &o);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	rng_state = o.seed * 0x9E3779B97F4A7C15ull + 0x1234567;
	if (!rng_state)
		rng_state = 1;

	const int tick_ms = o.rto_ms / 4 > 0 ? (o.rto_ms / 4 < 20 ? o.rto_ms / 4 : 20) : 1;
	link_open(&l, o.iface, 32 << 20, tick_ms);
	memset(&t, 0, sizeof(t));
	discover(&l, &o, &t);
	identify(&l, &t);
	struct rx_ring ring;
	memset(&ring, 0, sizeof(ring));
	if (o.rx_ring)
		rx_ring_open(&ring, &l);

	/* Request size and region. */
	long max_bytes = (long)t.max_sectors * SECTOR;
	long io_bytes = o.io_bytes ? o.io_bytes
				   : (o.workload == SEQ_READ || o.workload == SEQ_WRITE ? max_bytes : 4096);
	char note[256] = "";
	if (io_bytes > max_bytes) {
		snprintf(note, sizeof(note),
			 "at MTU %d a request carries at most %ld bytes (%d sectors): the %ld-byte "
			 "requests are %ld bytes, one frame each",
			 l.mtu, max_bytes, t.max_sectors, io_bytes, max_bytes);
		io_bytes = max_bytes;
	}
	unsigned io_sectors = (unsigned)(io_bytes / SECTOR);
	uint64_t region = o.region ? o.region : t.capacity;
	if (region > t.capacity) {
		fprintf(stderr, "kinit: --region %llu is beyond the capacity %llu\n",
			(unsigned long long)region, (unsigned long long)t.capacity);
		return 2;
	}
	uint64_t units = region / io_sectors;
	if (units < (uint64_t)o.window + 1) {
		fprintf(stderr, "kinit: a region of %llu sectors holds fewer than window+1 requests\n",
			(unsigned long long)region);
		return 2;
	}
	if (o.workload == VERIFY && units > (1u << 28)) {
		fprintf(stderr, "kinit: verify keeps a version per request-sized unit: use --region\n");
		return 2;
	}
	int lba48 = t.lba48 || region > 0x0fffffff;

	/* Buffers: slots, write data, receive frames, batches. */
	int W = o.window, B = o.batch;
	size_t frame_size = (size_t)l.mtu + 14 + 64;
	struct slot *slots = calloc((size_t)W, sizeof(*slots));
	int *free_stack = malloc(sizeof(int) * (size_t)W), nfree = 0;
	int *queue = malloc(sizeof(int) * (size_t)W), nqueue = 0;
	unsigned char *wdata = malloc((size_t)io_bytes);
	unsigned char *rbuf = malloc(frame_size * (size_t)B);
	struct mmsghdr *rmsg = calloc((size_t)B, sizeof(*rmsg));
	struct iovec *riov = calloc((size_t)B, sizeof(*riov));
	struct mmsghdr *smsg = calloc((size_t)W, sizeof(*smsg));
	struct iovec *siov = calloc((size_t)W * 2, sizeof(*siov));
	uint32_t *versions = NULL;
	uint8_t *unit_busy = NULL;
	if (!slots || !free_stack || !queue || !wdata || !rbuf || !rmsg || !riov || !smsg || !siov)
		die("kinit", "out of memory", NULL);
	for (long i = 0; i < io_bytes; i++)
		wdata[i] = (unsigned char)(rnd() >> 56);
	if (o.workload == VERIFY) {
		versions = calloc(units, sizeof(*versions));
		unit_busy = calloc(units, 1);
		if (!versions || !unit_busy)
			die("kinit", "out of memory", NULL);
		for (int s = 0; s < W; s++)
			if (!(slots[s].wbuf = malloc((size_t)io_bytes)))
				die("kinit", "out of memory", NULL);
	}
	for (int i = 0; i < B; i++) {
		riov[i].iov_base = rbuf + frame_size * (size_t)i;
		riov[i].iov_len = frame_size;
		rmsg[i].msg_hdr.msg_iov = &riov[i];
		rmsg[i].msg_hdr.msg_iovlen = 1;
	}
	for (int s = W - 1; s >= 0; s--) {
		free_stack[nfree++] = s;
		memset(slots[s].hdr, 0, AOE_ATA_HDR_LEN);
		put_request_header(slots[s].hdr, &l, t.mac, t.shelf, t.slot, AOE_CMD_ATA, 0);
	}
	size_t max_samples = (size_t)1 << 20, nsamples = 0;
	uint32_t *samples = malloc(max_samples * sizeof(*samples));
	if (!samples)
		die("kinit", "out of memory", NULL);
	if (o.perf_fifo)
		perf_open(o.perf_fifo);

	if (o.start_at_ms > 0) {
		struct timespec at = { .tv_sec = (time_t)(o.start_at_ms / 1000),
				       .tv_nsec = (long)((o.start_at_ms - (double)(time_t)(o.start_at_ms / 1000) * 1000) * 1e6) };
		while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &at, NULL) == EINTR && !stop_requested)
			;
	}

	/* Phases: 0 warm-up, 1 measured, 2 drain. */
	struct counters c[3];
	memset(c, 0, sizeof(c));
	int phase = o.warmup > 0 ? 0 : 1;
	uint64_t start = mono_ns();
	uint64_t t_meas = start + (uint64_t)(o.warmup * 1e9);
	uint64_t t_end = t_meas + (uint64_t)(o.seconds * 1e9);
	uint64_t t_drain_end = 0, meas_start_ns = start, meas_end_ns = 0;
	uint64_t rto_ns = (uint64_t)o.rto_ms * 1000000ull, next_check = start + rto_ns;
	uint64_t cpu0 = 0, cpu1 = 0;
	double busy0 = 0, busy1 = 0;
	struct timespec wall0 = { 0, 0 };
	struct rusage ru0, ru1;
	static struct watch_snapshot w0, w1;
	uint64_t seq_cursor = 0, gen = 1, version_counter = 0;
	int inflight = 0;
	uint64_t unanswered = 0;
	memset(&ru0, 0, sizeof(ru0));
	memset(&ru1, 0, sizeof(ru1));

#define BEGIN_MEASURE(now)                                   \
	do {                                                 \
		if (nwatch)                                  \
			snapshot(&w0);                       \
		perf_command("enable\n");                    \
		busy0 = machine_busy_seconds();              \
		clock_gettime(CLOCK_REALTIME, &wall0);       \
		getrusage(RUSAGE_SELF, &ru0);                \
		cpu0 = cpu_ns();                             \
		meas_start_ns = (now);                       \
		fputs("kinit: measuring\n", stderr);         \
	} while (0)
	if (phase == 1)
		BEGIN_MEASURE(start);

	for (;;) {
		uint64_t now = mono_ns();
		if (phase == 0 && (now >= t_meas || stop_requested)) {
			phase = 1;
			BEGIN_MEASURE(now);
		}
		if (phase == 1 &&
		    (now >= t_end || stop_requested || (o.requests && c[1].requests >= o.requests))) {
			cpu1 = cpu_ns();
			getrusage(RUSAGE_SELF, &ru1);
			busy1 = machine_busy_seconds();
			perf_command("disable\n");
			if (nwatch)
				snapshot(&w1);
			fputs("kinit: measured\n", stderr);
			meas_end_ns = now < t_end ? now : t_end;
			phase = 2;
			t_drain_end = now + rto_ns * (uint64_t)o.retries + 1000000000ull;
		}
		struct counters *k = &c[phase];

		/* Fill the window. */
		while (phase < 2 && nfree > 0) {
			int s = free_stack[--nfree];
			struct slot *sl = &slots[s];
			uint64_t unit = 0;
			int write = 0;
			switch (o.workload) {
			case SEQ_READ:
			case SEQ_WRITE:
				unit = seq_cursor;
				seq_cursor = seq_cursor + 1 < units ? seq_cursor + 1 : 0;
				write = o.workload == SEQ_WRITE;
				break;
			case RAND_READ:
				unit = below(units);
				break;
			case MIXED:
				unit = below(units);
				write = (int)below(100) >= o.read_percent;
				break;
			case VERIFY:
				do
					unit = below(units);
				while (unit_busy[unit]);
				unit_busy[unit] = 1;
				write = (int)below(100) >= o.read_percent;
				break;
			}
			sl->busy = 1;
			sl->write = (uint8_t)write;
			sl->tries = 0;
			sl->count = (uint16_t)io_sectors;
			sl->lba = unit * io_sectors;
			sl->unit = (uint32_t)unit;
			sl->tag = (uint32_t)(gen++ << SLOT_BITS) | (uint32_t)s;
			unsigned char *h = sl->hdr;
			h[OFF_SECTOR_COUNT] = (unsigned char)io_sectors;
			uint64_t lba = sl->lba;
			if (lba48) {
				h[OFF_AFLAGS] = AOE_AFL_EXT | (write ? AOE_AFL_WRITE : 0);
				h[OFF_CMD_STATUS] = write ? ATA_CMD_WRITE_EXT : ATA_CMD_READ_EXT;
				for (int b = 0; b < 6; b++)
					h[OFF_LBA + b] = (unsigned char)(lba >> (8 * b));
			} else {
				h[OFF_AFLAGS] = write ? AOE_AFL_WRITE : 0;
				h[OFF_CMD_STATUS] = write ? ATA_CMD_WRITE : ATA_CMD_READ;
				for (int b = 0; b < 4; b++)
					h[OFF_LBA + b] = (unsigned char)(lba >> (8 * b));
				h[OFF_LBA + 3] = (unsigned char)((h[OFF_LBA + 3] & 0x0f) | 0xe0);
				h[OFF_LBA + 4] = h[OFF_LBA + 5] = 0;
			}
			if (o.workload == VERIFY && write) {
				sl->version = (uint32_t)++version_counter;
				fill_pattern(sl->wbuf, lba, io_sectors, sl->version);
			}
			queue[nqueue++] = s;
			inflight++;
		}

		/* Send everything queued (new requests and retransmissions) in one call. */
		if (nqueue > 0) {
			for (int i = 0; i < nqueue; i++) {
				struct slot *sl = &slots[queue[i]];
				struct iovec *v = &siov[2 * i];
				put32(sl->hdr + OFF_TAG, sl->tag);
				v[0].iov_base = sl->hdr;
				v[0].iov_len = AOE_ATA_HDR_LEN;
				if (sl->write) {
					v[1].iov_base = o.workload == VERIFY ? sl->wbuf : wdata;
					v[1].iov_len = (size_t)sl->count * SECTOR;
				} else {
					/* Reads are padded to the Ethernet minimum (the bytes are ignored). */
					v[1].iov_base = wdata;
					v[1].iov_len = AOE_MIN_FRAME - AOE_ATA_HDR_LEN;
				}
				memset(&smsg[i].msg_hdr, 0, sizeof(smsg[i].msg_hdr));
				smsg[i].msg_hdr.msg_iov = v;
				smsg[i].msg_hdr.msg_iovlen = 2;
				if (sl->tries == 0)
					sl->first_ns = now;
				sl->sent_ns = now;
				sl->tries++;
			}
			int done = 0;
			while (done < nqueue) {
				int n = sendmmsg(l.fd, smsg + done, (unsigned)(nqueue - done), 0);
				k->send_calls++;
				if (n > 0) {
					done += n;
				} else if (errno == EINTR) {
					continue;
				} else {
					/* Dropped (ENOBUFS from the device queue, ...): the timer resends it. */
					if (!k->send_errors)
						note_error("sendmmsg: %s", strerror(errno));
					k->send_errors++;
					done++;
				}
			}
			nqueue = 0;
		}
		if (phase == 2 && (inflight == 0 || now >= t_drain_end)) {
			unanswered = (uint64_t)inflight;
			break;
		}

		/* Wait for replies: block until one is there, then take all queued. */
		int n;
		if (o.rx_ring) {
			n = rx_ring_take(&ring, riov, rmsg, B);
			if (n == 0) {
				struct pollfd p = { .fd = l.fd, .events = POLLIN, .revents = 0 };
				poll(&p, 1, tick_ms);
				k->recv_calls++;
				n = rx_ring_take(&ring, riov, rmsg, B);
			}
		} else {
			n = recvmmsg(l.fd, rmsg, (unsigned)B, MSG_WAITFORONE, NULL);
			k->recv_calls++;
		}
		now = mono_ns();
		if (phase == 1 && now >= t_end)
			k = &c[2]; /* replies taken after the window are not the window's */
		if (n <= 0) {
			k->recv_empty++;
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				die("recvmmsg", strerror(errno), NULL);
		}
		for (int i = 0; i < n; i++) {
			const unsigned char *f = riov[i].iov_base;
			size_t len = rmsg[i].msg_len;
			k->frames_in++;
			if (len < AOE_ATA_HDR_LEN || !(f[OFF_VER_FLAGS] & AOE_FL_RESPONSE) ||
			    f[OFF_COMMAND] != AOE_CMD_ATA || memcmp(f + 6, t.mac, 6))
				continue;
			uint32_t tag = get32(f + OFF_TAG);
			unsigned s = tag & SLOT_MASK;
			if (s >= (unsigned)W || !slots[s].busy || slots[s].tag != tag) {
				k->stale++;
				continue;
			}
			struct slot *sl = &slots[s];
			int failed = 0;
			if (f[OFF_VER_FLAGS] & AOE_FL_ERROR) {
				note_error("AoE error %d for LBA %llu", f[OFF_ERROR],
					   (unsigned long long)sl->lba);
				failed = 1;
			} else if (f[OFF_CMD_STATUS] & ATA_ERR) {
				note_error("ATA status 0x%02x error 0x%02x for LBA %llu",
					   f[OFF_CMD_STATUS], f[OFF_ERR_FEATURE],
					   (unsigned long long)sl->lba);
				failed = 1;
			} else if (!sl->write && len < AOE_ATA_HDR_LEN + (size_t)sl->count * SECTOR) {
				note_error("short read reply: %zu bytes for %u sectors", len, sl->count);
				failed = 1;
			}
			if (failed) {
				k->errors++;
			} else {
				if (o.workload == VERIFY) {
					if (sl->write) {
						versions[sl->unit] = sl->version;
					} else if (versions[sl->unit]) {
						k->checked++;
						int bad = check_pattern(f + AOE_ATA_HDR_LEN, sl->lba, sl->count,
									versions[sl->unit]);
						if (bad >= 0) {
							k->mismatches++;
							note_error("verify: sector %llu differs from version %u "
								   "written in this run",
								   (unsigned long long)(sl->lba + (unsigned)bad),
								   versions[sl->unit]);
						}
					} else {
						k->unverified++;
					}
				}
				k->requests++;
				k->bytes += (uint64_t)sl->count * SECTOR;
				if (sl->write)
					k->writes++;
				else
					k->reads++;
				if (k == &c[1]) {
					uint64_t lat = now - sl->first_ns;
					if (nsamples == max_samples) {
						uint32_t *bigger = realloc(samples, 2 * max_samples * sizeof(*samples));
						if (bigger) {
							samples = bigger;
							max_samples *= 2;
						}
					}
					if (nsamples < max_samples)
						samples[nsamples++] = lat > UINT32_MAX ? UINT32_MAX : (uint32_t)lat;
				}
			}
			if (unit_busy)
				unit_busy[sl->unit] = 0;
			sl->busy = 0;
			inflight--;
			free_stack[nfree++] = (int)s; /* not refilled while draining */
		}

		if (o.rx_ring && n > 0)
			rx_ring_release(&ring, n);

		/* Retransmit what timed out (checked at most every rto/4). */
		if (now >= next_check) {
			next_check = now + rto_ns / 4;
			for (int s = 0; s < W; s++) {
				struct slot *sl = &slots[s];
				if (!sl->busy || now - sl->sent_ns < rto_ns)
					continue;
				int queued = 0;
				for (int i = 0; i < nqueue; i++)
					queued |= queue[i] == s;
				if (queued)
					continue;
				if (sl->tries >= o.retries) {
					note_error("no answer for LBA %llu after %d sends",
						   (unsigned long long)sl->lba, sl->tries);
					k->errors++;
					if (unit_busy)
						unit_busy[sl->unit] = 0;
					sl->busy = 0;
					inflight--;
					free_stack[nfree++] = s;
					continue;
				}
				sl->tag = (uint32_t)(gen++ << SLOT_BITS) | (uint32_t)s;
				k->retransmits++;
				queue[nqueue++] = s;
			}
		}
	}
	if (phase < 2) {
		cpu1 = cpu_ns();
		getrusage(RUSAGE_SELF, &ru1);
		busy1 = machine_busy_seconds();
		meas_end_ns = mono_ns();
	}

	/* Results. */
	struct counters *m = &c[1];
	double secs = (double)(meas_end_ns - meas_start_ns) / 1e9;
	qsort(samples, nsamples, sizeof(*samples), cmp_u32);
	double sum = 0;
	for (size_t i = 0; i < nsamples; i++)
		sum += samples[i];
	double cpu = (double)(cpu1 - cpu0) / 1e9;
	double utime = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		       (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
	double stime = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		       (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	long vcsw = ru1.ru_nvcsw - ru0.ru_nvcsw, ivcsw = ru1.ru_nivcsw - ru0.ru_nivcsw;
	double req = m->requests ? (double)m->requests : 1;
	char mac[18];
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", t.mac[0], t.mac[1], t.mac[2],
		 t.mac[3], t.mac[4], t.mac[5]);

	printf("{\n  \"initiator\": \"kinit\",\n  \"iface\": ");
	json_string(l.name);
	printf(",\n  \"mtu\": %d,\n", l.mtu);
	printf("  \"target\": {\"mac\": \"%s\", \"shelf\": %d, \"slot\": %d, \"bufferCount\": %d, "
	       "\"firmware\": %d, \"configSectors\": %d, \"aoeVersion\": %d, \"maxSectors\": %d, "
	       "\"capacitySectors\": %llu, \"lba48\": %s, \"model\": ",
	       mac, t.shelf, t.slot, t.buffer_count, t.firmware, t.cfg_sectors, t.aoe_version,
	       t.max_sectors, (unsigned long long)t.capacity, t.lba48 ? "true" : "false");
	json_string(t.model);
	printf("},\n");
	printf("  \"workload\": \"%s\",\n  \"requestBytes\": %ld,\n  \"sectorsPerRequest\": %u,\n",
	       WORKLOAD_NAMES[o.workload], io_bytes, io_sectors);
	printf("  \"note\": ");
	if (note[0])
		json_string(note);
	else
		printf("null");
	printf(",\n  \"window\": %d,\n  \"batch\": %d,\n  \"readPercent\": %d,\n  \"regionSectors\": %llu,\n",
	       W, B, o.read_percent, (unsigned long long)region);
	printf("  \"rtoMs\": %d,\n  \"retries\": %d,\n  \"warmupSeconds\": %g,\n", o.rto_ms,
	       o.retries, o.warmup);
	printf("  \"seconds\": %.6f,\n  \"interrupted\": %s,\n", secs, stop_requested ? "true" : "false");
	printf("  \"startedAtMs\": %.3f,\n  \"machineBusySeconds\": %.3f,\n",
	       (double)wall0.tv_sec * 1e3 + (double)wall0.tv_nsec / 1e6, busy1 - busy0);
	printf("  \"requests\": %llu,\n  \"reads\": %llu,\n  \"writes\": %llu,\n  \"bytes\": %llu,\n",
	       (unsigned long long)m->requests, (unsigned long long)m->reads,
	       (unsigned long long)m->writes, (unsigned long long)m->bytes);
	printf("  \"requestsPerSec\": %.1f,\n  \"mbPerSec\": %.3f,\n",
	       secs > 0 ? (double)m->requests / secs : 0, secs > 0 ? (double)m->bytes / secs / 1e6 : 0);
	printf("  \"latencyMs\": {\"p50\": %.4f, \"p99\": %.4f, \"max\": %.4f, \"mean\": %.4f, "
	       "\"samples\": %zu},\n",
	       percentile_ms(samples, nsamples, 0.5), percentile_ms(samples, nsamples, 0.99),
	       nsamples ? samples[nsamples - 1] / 1e6 : 0, nsamples ? sum / (double)nsamples / 1e6 : 0,
	       nsamples);
	printf("  \"retransmits\": %llu,\n  \"errors\": %llu,\n  \"stale\": %llu,\n  \"sendErrors\": %llu,\n",
	       (unsigned long long)m->retransmits, (unsigned long long)m->errors,
	       (unsigned long long)m->stale, (unsigned long long)m->send_errors);
	printf("  \"unansweredAtEnd\": %llu,\n  \"firstError\": ", (unsigned long long)unanswered);
	if (first_error[0])
		json_string(first_error);
	else
		printf("null");
	printf(",\n  \"allPhases\": {\"requests\": %llu, \"retransmits\": %llu, \"errors\": %llu},\n",
	       (unsigned long long)(c[0].requests + c[1].requests + c[2].requests),
	       (unsigned long long)(c[0].retransmits + c[1].retransmits + c[2].retransmits),
	       (unsigned long long)(c[0].errors + c[1].errors + c[2].errors));
	if (o.workload == VERIFY) {
		uint64_t checked = 0, mism = 0, unver = 0;
		for (int p = 0; p < 3; p++) {
			checked += c[p].checked;
			mism += c[p].mismatches;
			unver += c[p].unverified;
		}
		printf("  \"verify\": {\"checkedReads\": %llu, \"mismatches\": %llu, "
		       "\"uncheckedReads\": %llu},\n",
		       (unsigned long long)checked, (unsigned long long)mism,
		       (unsigned long long)unver);
	}
	printf("  \"cpu\": {\"seconds\": %.6f, \"userSeconds\": %.6f, \"systemSeconds\": %.6f, "
	       "\"cores\": %.4f, \"usPerRequest\": %.4f},\n",
	       cpu, utime, stime, secs > 0 ? cpu / secs : 0, cpu * 1e6 / req);
	printf("  \"rxRing\": %s,\n", o.rx_ring ? "true" : "false");
	printf("  \"syscalls\": {\"sendmmsg\": %llu, \"recvmmsg\": %llu, \"recvmmsgEmpty\": %llu, "
	       "\"perRequest\": %.4f, \"repliesPerRecvmmsg\": %.3f},\n",
	       (unsigned long long)m->send_calls, (unsigned long long)m->recv_calls,
	       (unsigned long long)m->recv_empty,
	       (double)(m->send_calls + m->recv_calls) / req,
	       m->recv_calls ? (double)m->frames_in / (double)m->recv_calls : 0);
	printf("  \"contextSwitches\": {\"voluntary\": %ld, \"involuntary\": %ld, \"perRequest\": %.4f}",
	       vcsw, ivcsw, (double)(vcsw + ivcsw) / req);
	if (nwatch) {
		printf(",\n  \"watched\": [");
		int first = 1;
		for (int i = 0; i < w1.n; i++) {
			const struct thread_sample *b = &w1.t[i], *a = NULL;
			for (int j = 0; j < w0.n; j++)
				if (w0.t[j].tid == b->tid && w0.t[j].pid == b->pid)
					a = &w0.t[j];
			uint64_t cpu_a = a ? a->cpu_ns : 0, v_a = a ? a->voluntary : 0,
				 i_a = a ? a->involuntary : 0;
			printf("%s\n    {\"pid\": %d, \"tid\": %d, \"comm\": ", first ? "" : ",", b->pid,
			       b->tid);
			json_string(b->comm);
			printf(", \"cpuSeconds\": %.6f, \"voluntary\": %llu, \"involuntary\": %llu}",
			       (double)(b->cpu_ns - cpu_a) / 1e9,
			       (unsigned long long)(b->voluntary - v_a),
			       (unsigned long long)(b->involuntary - i_a));
			first = 0;
		}
		printf("\n  ]");
	}
	printf("\n}\n");
	if (perf_ctl)
		fclose(perf_ctl);
	if (perf_ack)
		fclose(perf_ack);
	return 0;
}
