/*
 * kecho: the echo responder of bench/kinit.c's kind, the ceiling of `deno task bench`.
 *
 * One plain AF_PACKET SOCK_RAW socket bound to the interface and ethertype 0x88A2 (no TPACKET
 * ring). Each turn: one recvmmsg that blocks until a request is there and takes every request
 * queued (MSG_WAITFORONE), then one sendmmsg with every reply. Reads are answered from one
 * buffer of the largest request, always in the CPU's cache (the reply's data is gathered
 * straight from it, no copy in user space), writes are acknowledged at once, Query Config and
 * IDENTIFY DEVICE are answered like a target's. No disk, no queue, no threads: the least any
 * target can do per request on this link.
 *
 * With --per-frame it answers frame by frame the way vblade's loop does: one recvfrom that blocks
 * for one request, then one sendto of its reply, and again. Beside the batched loop it is the other
 * ceiling: with few frames per turn (MTU 1500, small requests) two plain system calls per request
 * can cost less than a batch that makes the initiator wait for the whole of it.
 *
 * With --store it is a RAM disk instead: reads come from an image of SECTORS in memory and
 * writes are copied into it, so that a verifying initiator (kinit --workload verify) can check
 * what it wrote. That costs more per request (memory traffic): not the ceiling.
 *
 *   kecho IFACE SHELF SLOT SECTORS [--per-frame] [--store] [--bufcnt N] [--batch N]
 *
 * Prints "kecho is running on IFACE ..." once the socket is open; stops on SIGTERM/SIGINT.
 * Build: gcc -O2 -Wall -Wextra -o kecho kecho.c (bench/bench.ts does it).
 */
#include "kaoe.h"

#include <sys/uio.h>

static const char USAGE[] =
	"kecho IFACE SHELF SLOT SECTORS [--per-frame] [--store] [--bufcnt N] [--batch N]\n"
	"  an AoE echo target on a plain packet socket: reads from one buffer, writes acked at once\n"
	"  --per-frame one recvfrom and one sendto per frame (vblade's loop) instead of batches\n"
	"  --store     a RAM disk instead: reads from an image of SECTORS, writes stored in it\n"
	"  --bufcnt N  Buffer Count advertised in Query Config (default 64)\n"
	"  --batch N   most frames per recvmmsg/sendmmsg (default 64)\n";

static long arg(const char *s, const char *what, long min, long max)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == 0 || *end != 0 || v < min || v > max) {
		fprintf(stderr, "kecho: %s must be an integer in %ld..%ld, got \"%s\"\n", what, min,
			max, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	const char *pos[4];
	int npos = 0, store = 0, per_frame = 0;
	long bufcnt = 64, batch = 64;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--store"))
			store = 1;
		else if (!strcmp(argv[i], "--per-frame"))
			per_frame = 1;
		else if (!strcmp(argv[i], "--bufcnt") && i + 1 < argc)
			bufcnt = arg(argv[++i], "--bufcnt", 1, 65535);
		else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			batch = arg(argv[++i], "--batch", 1, 1024);
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(USAGE, stdout);
			return 0;
		} else if (npos < 4 && argv[i][0] != '-')
			pos[npos++] = argv[i];
		else {
			fputs(USAGE, stderr);
			return 2;
		}
	}
	if (npos != 4) {
		fputs(USAGE, stderr);
		return 2;
	}
	const int shelf = (int)arg(pos[1], "SHELF", 0, 0xfffe);
	const int slot = (int)arg(pos[2], "SLOT", 0, 0xfe);
	const uint64_t sectors = (uint64_t)arg(pos[3], "SECTORS", 1, 1L << 40);

	struct link l;
	link_open(&l, pos[0], 32 << 20, 0);
	int max_sectors = (l.mtu - AOE_ATA_HDR_LEN) / SECTOR;
	if (max_sectors > 255)
		max_sectors = 255;

	/* Read data: with --store the image (every page touched), else one request's worth. */
	const uint64_t image_bytes = store ? sectors * SECTOR : (uint64_t)max_sectors * SECTOR;
	unsigned char *image = malloc(image_bytes);
	if (!image)
		die("kecho", "cannot allocate the image", "use fewer SECTORS");
	for (uint64_t i = 0; i < image_bytes; i += 8) {
		uint64_t w = (i >> 9) * 0x9E3779B97F4A7C15ull ^ i;
		memcpy(image + i, &w, 8);
	}
	static unsigned char zeros[AOE_MIN_FRAME];
	unsigned char identify[SECTOR];
	memset(identify, 0, sizeof(identify));
#define PUTW(i, v)                                           \
	do {                                                 \
		identify[2 * (i)] = (unsigned char)((v) & 0xff); \
		identify[2 * (i) + 1] = (unsigned char)((v) >> 8); \
	} while (0)
	PUTW(49, 1 << 9);			    /* LBA supported */
	PUTW(83, 1 << 10 | 1 << 14);		    /* LBA48 supported */
	PUTW(86, 1 << 10);			    /* LBA48 enabled */
	uint64_t lba28 = sectors > 0x0fffffff ? 0x0fffffff : sectors;
	PUTW(60, lba28 & 0xffff);
	PUTW(61, lba28 >> 16);
	for (int w = 0; w < 4; w++)
		PUTW(100 + w, (sectors >> (16 * w)) & 0xffff);
#undef PUTW
	static const char model[40] = "kecho bench echo                        ";
	for (int i = 0; i < 20; i++) { /* ATA strings: bytes swapped within each word */
		identify[54 + 2 * i] = (unsigned char)model[2 * i + 1];
		identify[54 + 2 * i + 1] = (unsigned char)model[2 * i];
	}

	const size_t frame = (size_t)l.mtu + 14 + 64;
	unsigned char *rbuf = malloc(frame * (size_t)batch);
	unsigned char *hdrs = malloc((size_t)AOE_MIN_FRAME * (size_t)batch);
	struct mmsghdr *rmsg = calloc((size_t)batch, sizeof(*rmsg));
	struct mmsghdr *smsg = calloc((size_t)batch, sizeof(*smsg));
	struct iovec *riov = calloc((size_t)batch, sizeof(*riov));
	struct iovec *siov = calloc((size_t)batch * 2, sizeof(*siov));
	unsigned char *sbuf = malloc(frame);
	if (!rbuf || !hdrs || !rmsg || !smsg || !riov || !siov || !sbuf)
		die("kecho", "out of memory", NULL);
	for (long i = 0; i < batch; i++) {
		riov[i].iov_base = rbuf + frame * (size_t)i;
		riov[i].iov_len = frame;
		rmsg[i].msg_hdr.msg_iov = &riov[i];
		rmsg[i].msg_hdr.msg_iovlen = 1;
	}
	if (per_frame)
		batch = 1;
	printf("kecho is running on %s (e%d.%d, %d sectors per request, %llu sectors%s%s)\n", l.name,
	       shelf, slot, max_sectors, (unsigned long long)sectors, store ? ", storing writes" : "",
	       per_frame ? ", frame by frame" : "");
	fflush(stdout);

	for (;;) {
		int n;
		if (per_frame) {
			ssize_t got = recvfrom(l.fd, riov[0].iov_base, frame, 0, NULL, NULL);
			n = got < 0 ? -1 : 1;
			if (got >= 0)
				rmsg[0].msg_len = (unsigned)got;
		} else {
			n = recvmmsg(l.fd, rmsg, (unsigned)batch, MSG_WAITFORONE, NULL);
		}
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("recvmmsg", strerror(errno), NULL);
		}
		int out = 0;
		for (int i = 0; i < n; i++) {
			const unsigned char *rx = riov[i].iov_base;
			size_t len = rmsg[i].msg_len;
			if (len < AOE_HDR_LEN || (rx[OFF_VER_FLAGS] >> 4) != AOE_VERSION ||
			    (rx[OFF_VER_FLAGS] & AOE_FL_RESPONSE))
				continue;
			int want_shelf = get16(rx + OFF_MAJOR), want_slot = rx[OFF_MINOR];
			if ((want_shelf != shelf && want_shelf != AOE_SHELF_BROADCAST) ||
			    (want_slot != slot && want_slot != AOE_SLOT_BROADCAST))
				continue;
			unsigned char *f = hdrs + (size_t)AOE_MIN_FRAME * (size_t)out;
			struct iovec *v = &siov[2 * out];
			memset(f, 0, AOE_MIN_FRAME);
			put_eth(f, rx + 6, l.mac);
			f[OFF_VER_FLAGS] = AOE_VERSION << 4 | AOE_FL_RESPONSE;
			put16(f + OFF_MAJOR, (uint16_t)shelf);
			f[OFF_MINOR] = (unsigned char)slot;
			memcpy(f + OFF_COMMAND, rx + OFF_COMMAND, 5); /* command and tag */
			v[0].iov_base = f;
			v[1].iov_base = zeros;
			v[1].iov_len = 0;
			if (rx[OFF_COMMAND] == AOE_CMD_CFG) {
				if (len < AOE_CFG_HDR_LEN || (rx[OFF_CFG_VER_CCMD] & 0x0f) != AOE_CFG_READ)
					continue;
				put16(f + OFF_CFG_BUFCNT, (uint16_t)bufcnt);
				put16(f + OFF_CFG_FIRMWARE, 0x4019);
				f[OFF_CFG_SCNT] = (unsigned char)max_sectors;
				f[OFF_CFG_VER_CCMD] = AOE_VERSION << 4 | AOE_CFG_READ;
				v[0].iov_len = AOE_MIN_FRAME; /* empty config string, padded */
			} else if (rx[OFF_COMMAND] == AOE_CMD_ATA && len >= AOE_ATA_HDR_LEN) {
				memcpy(f + OFF_AFLAGS, rx + OFF_AFLAGS, AOE_ATA_HDR_LEN - OFF_AFLAGS);
				f[OFF_ERR_FEATURE] = 0;
				f[OFF_CMD_STATUS] = ATA_DRDY;
				v[0].iov_len = AOE_ATA_HDR_LEN;
				const int cmd = rx[OFF_CMD_STATUS], count = rx[OFF_SECTOR_COUNT];
				const uint64_t lba = ata_lba(rx);
				const int read = cmd == ATA_CMD_READ || cmd == ATA_CMD_READ_EXT;
				const int write = cmd == ATA_CMD_WRITE || cmd == ATA_CMD_WRITE_EXT;
				int bad = 0;
				if (read || write)
					bad = count > max_sectors || lba + (uint64_t)count > sectors ||
						(write && len < AOE_ATA_HDR_LEN + (size_t)count * SECTOR);
				if (bad) {
					f[OFF_ERR_FEATURE] = ATA_ABORTED;
					f[OFF_CMD_STATUS] = ATA_DRDY | ATA_ERR;
				} else if (read) {
					v[1].iov_base = image + (store ? lba * SECTOR : 0);
					v[1].iov_len = (size_t)count * SECTOR;
				} else if (write) {
					if (store)
						memcpy(image + lba * SECTOR, rx + AOE_ATA_HDR_LEN,
						       (size_t)count * SECTOR);
					f[OFF_SECTOR_COUNT] = 0;
				} else if (cmd == ATA_CMD_ID_ATA) {
					v[1].iov_base = identify;
					v[1].iov_len = SECTOR;
				} /* FLUSH, CHECK POWER MODE, ...: nothing to do */
				if (v[0].iov_len + v[1].iov_len < AOE_MIN_FRAME)
					v[0].iov_len = AOE_MIN_FRAME - v[1].iov_len;
			} else {
				continue;
			}
			memset(&smsg[out].msg_hdr, 0, sizeof(smsg[out].msg_hdr));
			smsg[out].msg_hdr.msg_iov = v;
			smsg[out].msg_hdr.msg_iovlen = 2;
			out++;
		}
		if (per_frame) {
			/* One reply: gathered into one buffer for a plain sendto, as vblade sends. */
			if (out == 1) {
				size_t len = 0;
				for (int k = 0; k < 2; k++) {
					memcpy(sbuf + len, siov[k].iov_base, siov[k].iov_len);
					len += siov[k].iov_len;
				}
				while (sendto(l.fd, sbuf, len, 0, NULL, 0) < 0 && errno == EINTR)
					;
			}
			continue;
		}
		for (int done = 0; done < out;) {
			int m = sendmmsg(l.fd, smsg + done, (unsigned)(out - done), 0);
			if (m > 0)
				done += m;
			else if (errno != EINTR)
				done++; /* dropped: the initiator retransmits */
		}
	}
}
