import assert from "node:assert/strict";
import * as constants from "../../ffi/constants.ts";
import * as structs from "../../ffi/structs.ts";

// Each table of ffi/structs.ts, the C struct it describes, and the C member behind each field.
const LAYOUTS: [string, string, Record<string, string>][] = [
  ["SOCKADDR_LL", "struct sockaddr_ll", {
    family: "sll_family",
    protocol: "sll_protocol",
    ifindex: "sll_ifindex",
    hatype: "sll_hatype",
    pkttype: "sll_pkttype",
    halen: "sll_halen",
    addr: "sll_addr",
  }],
  ["TPACKET_REQ", "struct tpacket_req", {
    blockSize: "tp_block_size",
    blockNr: "tp_block_nr",
    frameSize: "tp_frame_size",
    frameNr: "tp_frame_nr",
  }],
  ["TPACKET2_HDR", "struct tpacket2_hdr", {
    status: "tp_status",
    len: "tp_len",
    snaplen: "tp_snaplen",
    mac: "tp_mac",
    net: "tp_net",
    sec: "tp_sec",
    nsec: "tp_nsec",
    vlanTci: "tp_vlan_tci",
    vlanTpid: "tp_vlan_tpid",
  }],
  ["TPACKET_STATS", "struct tpacket_stats", { packets: "tp_packets", drops: "tp_drops" }],
  ["IOCB", "struct iocb", {
    data: "aio_data",
    key: "aio_key",
    rwFlags: "aio_rw_flags",
    opcode: "aio_lio_opcode",
    reqprio: "aio_reqprio",
    fildes: "aio_fildes",
    buf: "aio_buf",
    nbytes: "aio_nbytes",
    offset: "aio_offset",
    reserved2: "aio_reserved2",
    flags: "aio_flags",
    resfd: "aio_resfd",
  }],
  ["IO_EVENT", "struct io_event", { data: "data", obj: "obj", res: "res", res2: "res2" }],
  ["IOVEC", "struct iovec", { base: "iov_base", len: "iov_len" }],
  ["MSGHDR", "struct msghdr", {
    name: "msg_name",
    namelen: "msg_namelen",
    iov: "msg_iov",
    iovlen: "msg_iovlen",
    control: "msg_control",
    controllen: "msg_controllen",
    flags: "msg_flags",
  }],
  ["CMSGHDR", "struct cmsghdr", { len: "cmsg_len", level: "cmsg_level", type: "cmsg_type" }],
  ["EPOLL_EVENT", "struct epoll_event", { events: "events", data: "data" }],
  ["TIMESPEC", "struct timespec", { sec: "tv_sec", nsec: "tv_nsec" }],
  ["ITIMERSPEC", "struct itimerspec", { interval: "it_interval", value: "it_value" }],
  ["IFREQ", "struct ifreq", {
    name: "ifr_name",
    ifindex: "ifr_ifindex",
    mtu: "ifr_mtu",
    flags: "ifr_flags",
    hwaddrFamily: "ifr_hwaddr.sa_family",
    hwaddrData: "ifr_hwaddr.sa_data",
  }],
  ["SOCK_FILTER", "struct sock_filter", { code: "code", jt: "jt", jf: "jf", k: "k" }],
  ["SOCK_FPROG", "struct sock_fprog", { len: "len", filter: "filter" }],
  ["SIGACTION", "struct sigaction", {
    handler: "sa_handler",
    mask: "sa_mask",
    flags: "sa_flags",
    restorer: "sa_restorer",
  }],
  ["STAT", "struct stat", {
    dev: "st_dev",
    ino: "st_ino",
    nlink: "st_nlink",
    mode: "st_mode",
    uid: "st_uid",
    gid: "st_gid",
    rdev: "st_rdev",
    stSize: "st_size",
  }],
  ["SOCKADDR_NL", "struct sockaddr_nl", {
    family: "nl_family",
    pad: "nl_pad",
    pid: "nl_pid",
    groups: "nl_groups",
  }],
  ["NLMSGHDR", "struct nlmsghdr", {
    len: "nlmsg_len",
    type: "nlmsg_type",
    flags: "nlmsg_flags",
    seq: "nlmsg_seq",
    pid: "nlmsg_pid",
  }],
  ["NLMSGERR", "struct nlmsgerr", { error: "error", msg: "msg" }],
  ["IFINFOMSG", "struct ifinfomsg", {
    family: "ifi_family",
    type: "ifi_type",
    index: "ifi_index",
    flags: "ifi_flags",
    change: "ifi_change",
  }],
  ["RTATTR", "struct rtattr", { len: "rta_len", type: "rta_type" }],
];

const HEADERS = `
#define _GNU_SOURCE
#include <stdio.h>
#include <stddef.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <linux/aio_abi.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
`;

function cProgram(): string {
  const lines: string[] = [];
  for (const [table, cStruct, fields] of LAYOUTS) {
    lines.push(`printf("${table}.size %zu\\n", sizeof(${cStruct}));`);
    for (const [field, member] of Object.entries(fields)) {
      lines.push(`printf("${table}.${field} %zu\\n", offsetof(${cStruct}, ${member}));`);
    }
  }
  // Our constants keep the C names, so each name is also the C expression.
  for (const name of Object.keys(constants)) {
    lines.push(`printf("${name} %lld\\n", (long long)(${name}));`);
  }
  return `${HEADERS}\nint main(void) {\n${lines.join("\n")}\nreturn 0;\n}\n`;
}

async function compileAndRun(source: string): Promise<Map<string, number>> {
  const dir = await Deno.makeTempDir({ prefix: "ggaoed-structs-" });
  try {
    await Deno.writeTextFile(`${dir}/layout.c`, source);
    const cc = await new Deno.Command("gcc", {
      args: ["-o", `${dir}/layout`, `${dir}/layout.c`],
      stderr: "piped",
    }).output();
    assert.ok(cc.success, `gcc failed:\n${new TextDecoder().decode(cc.stderr)}`);
    const run = await new Deno.Command(`${dir}/layout`, { stdout: "piped" }).output();
    assert.ok(run.success);
    const values = new Map<string, number>();
    for (const line of new TextDecoder().decode(run.stdout).trim().split("\n")) {
      const [name, value] = line.split(" ");
      values.set(name, Number(value));
    }
    return values;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// ETH_P_AOE is not in linux/if_ether.h on every system; define it the way the header does.
const SOURCE = cProgram().replace(
  "int main",
  "#ifndef ETH_P_AOE\n#define ETH_P_AOE 0x88A2\n#endif\nint main",
);

// Compiled once, shared by both tests.
let compiled: Promise<Map<string, number>> | null = null;
const cValues = () => compiled ??= compileAndRun(SOURCE);

Deno.test("every struct size and field offset in ffi/structs.ts matches the C headers", async () => {
  const c = await cValues();
  const tables = structs as unknown as Record<string, Record<string, number>>;
  for (const [table, , fields] of LAYOUTS) {
    assert.equal(tables[table].size, c.get(`${table}.size`), `${table}.size`);
    for (const field of Object.keys(fields)) {
      assert.equal(tables[table][field], c.get(`${table}.${field}`), `${table}.${field}`);
    }
    // Every field of the table is checked: none was added without a C counterpart.
    const ours = Object.keys(tables[table]).filter((k) => k !== "size").sort();
    assert.deepEqual(ours, Object.keys(fields).sort(), `${table} fields`);
  }
});

Deno.test("every constant in ffi/constants.ts equals the C headers' value", async () => {
  const c = await cValues();
  for (const [name, value] of Object.entries(constants)) {
    assert.equal(value, c.get(name), name);
  }
});
