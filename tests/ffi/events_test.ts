import assert from "node:assert/strict";
import { Epoll, EPOLLIN, EventFd, TimerFd } from "../../ffi/events.ts";

Deno.test("an EventFd signal wakes Epoll with its token and drain returns the summed count", () => {
  const epoll = Epoll.open(8);
  const a = EventFd.open();
  const b = EventFd.open();
  try {
    epoll.add(a.fd, EPOLLIN, 7);
    epoll.add(b.fd, EPOLLIN, 2 ** 40 + 3); // tokens wider than 32 bits survive
    assert.equal(epoll.wait(0), 0, "nothing signalled yet");
    a.signal();
    a.signal(4);
    b.signal(2 ** 33);
    assert.equal(epoll.wait(1000), 2);
    const tokens = [epoll.tokenAt(0), epoll.tokenAt(1)].sort((x, y) => x - y);
    assert.deepEqual(tokens, [7, 2 ** 40 + 3]);
    assert.equal(epoll.eventsAt(0) & EPOLLIN, EPOLLIN);
    assert.equal(a.drain(), 5);
    assert.equal(b.drain(), 2 ** 33);
    assert.equal(a.drain(), 0, "a drained counter reads 0 without blocking");
    assert.equal(epoll.wait(0), 0, "drained descriptors are no longer ready");
  } finally {
    a.close();
    b.close();
    epoll.close();
  }
});

Deno.test("Epoll.modify changes the token and remove stops reporting the descriptor", () => {
  const epoll = Epoll.open();
  const e = EventFd.open();
  try {
    epoll.add(e.fd, EPOLLIN, 1);
    epoll.modify(e.fd, EPOLLIN, 99);
    e.signal();
    assert.equal(epoll.wait(0), 1);
    assert.equal(epoll.tokenAt(0), 99);
    epoll.remove(e.fd);
    assert.equal(epoll.wait(0), 0);
    assert.throws(() => epoll.remove(e.fd), /epoll_ctl\(DEL, fd \d+\): ENOENT/);
  } finally {
    e.close();
    epoll.close();
  }
});

Deno.test("a TimerFd armed for 50 ms wakes Epoll after 50 ms and not long after", () => {
  const epoll = Epoll.open();
  const timer = TimerFd.open();
  try {
    epoll.add(timer.fd, EPOLLIN, 5);
    const start = performance.now();
    timer.arm(0.05);
    assert.equal(epoll.wait(2000), 1);
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 49, `woke after ${elapsed} ms`);
    // Not rounded up to a whole second; below that, a busy machine may wake this thread late.
    assert.ok(elapsed < 950, `woke after ${elapsed} ms`);
    assert.equal(timer.drain(), 1);
    assert.equal(timer.drain(), 0);
  } finally {
    timer.close();
    epoll.close();
  }
});

Deno.test("a disarmed TimerFd never fires, and re-arming replaces the deadline", () => {
  const epoll = Epoll.open();
  const timer = TimerFd.open();
  try {
    epoll.add(timer.fd, EPOLLIN, 1);
    timer.arm(0.02);
    timer.disarm();
    assert.equal(epoll.wait(60), 0);
    assert.equal(timer.drain(), 0);
    timer.arm(10);
    timer.arm(0); // shortest possible delay, not "disarm"
    assert.equal(epoll.wait(1000), 1);
    assert.equal(timer.drain(), 1);
  } finally {
    timer.close();
    epoll.close();
  }
});
