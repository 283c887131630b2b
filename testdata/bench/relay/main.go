// Command relay is a byte-for-byte TCP relay with no protocol work at all:
// each client connection gets its own backend connection, and bytes are
// copied both ways until either side closes. testdata/bench/pgbench.sh
// runs pgbench through it to show what a proxy costs before it does
// anything a proxy must do (parse, route, pool), in two designs:
//
//	-mode goroutine  two goroutines per client on Go's netpoller, the
//	                 design shardproxy's sessions use (the floor for it);
//	-mode epoll      one locked OS thread in a level-triggered epoll loop
//	                 with raw reads and writes, PgBouncer's design;
//	-mode epoll-raw  that loop without the Go scheduler's syscall path:
//	                 reads and writes are RawSyscall (the sockets are
//	                 non-blocking, so they never block), and epoll_wait is
//	                 first tried with a zero timeout the same way, entering
//	                 the scheduler's blocking-syscall path (which hands the
//	                 P off and takes one back) only when nothing is ready;
//	-mode coroutine  the epoll-raw loop, but each client's relaying is code
//	                 written as if its reads blocked, run as a coroutine
//	                 (iter.Pull) that yields to the loop where a read would
//	                 block: the shape a proxy session could keep on an
//	                 event loop.
//
// It is a measuring tool, not a product: no TLS, no timeouts, Linux only.
package main

import (
	"flag"
	"fmt"
	"iter"
	"log"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

func main() {
	mode := flag.String("mode", "goroutine", "goroutine | epoll | epoll-raw | coroutine")
	listen := flag.String("listen", "127.0.0.1:0", "address to accept clients on")
	backend := flag.String("backend", "", "address to relay each client to")
	flag.Parse()
	if *backend == "" {
		log.Fatal("relay: -backend is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	switch *mode {
	case "goroutine":
		serveGoroutines(ln, *backend)
	case "epoll", "epoll-raw", "coroutine":
		serveEpoll(ln, *backend, *mode == "coroutine", *mode == "epoll-raw" || *mode == "coroutine")
	default:
		fmt.Fprintf(os.Stderr, "relay: unknown -mode %q\n", *mode)
		os.Exit(2)
	}
}

func serveGoroutines(ln net.Listener, backend string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			b, err := net.Dial("tcp", backend)
			if err != nil {
				log.Print(err)
				c.Close()
				return
			}
			go copyUntilClosed(b, c)
			copyUntilClosed(c, b)
		}()
	}
}

// copyUntilClosed copies src to dst with plain Read and Write (io.Copy
// would splice through a pipe), then closes both, which ends the copy the
// other way too.
func copyUntilClosed(src, dst net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
}

// serveEpoll accepts on this goroutine and relays on one loop goroutine.
func serveEpoll(ln net.Listener, backend string, coro, raw bool) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatal(err)
	}
	l := &loop{ep: ep, coro: coro, raw: raw, pairs: map[int]*pair{}}
	go l.run()
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		b, err := net.Dial("tcp", backend)
		if err != nil {
			log.Print(err)
			c.Close()
			continue
		}
		l.add(&pair{cfd: detach(c), bfd: detach(b)})
	}
}

type loop struct {
	ep    int
	coro  bool       // resume a coroutine per pair rather than relay inline
	raw   bool       // -mode epoll-raw: syscalls bypass the scheduler where they cannot block
	mu    sync.Mutex // pairs is written by the accepting goroutine too
	pairs map[int]*pair
	buf   [64 << 10]byte // used by one pair at a time, on the loop goroutine
}

// pair is a client socket and its backend socket.
type pair struct {
	cfd, bfd int
	ready    int                     // the fd the loop found readable
	resume   func() (struct{}, bool) // coroutine mode: runs until it waits again
}

func (p *pair) other(fd int) int {
	if fd == p.cfd {
		return p.bfd
	}
	return p.cfd
}

func (l *loop) add(p *pair) {
	l.mu.Lock()
	l.pairs[p.cfd], l.pairs[p.bfd] = p, p
	l.mu.Unlock()
	for _, fd := range []int{p.cfd, p.bfd} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			log.Fatal(err)
		}
	}
}

func (l *loop) run() {
	if !l.coro {
		runtime.LockOSThread() // coroutine switches are slower on a locked thread
	}
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := l.wait(events)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			l.mu.Lock()
			p := l.pairs[fd]
			l.mu.Unlock()
			if p == nil {
				continue // closed earlier in this batch with its peer
			}
			p.ready = fd
			switch {
			case !l.coro:
				l.relayOnce(p)
			case p.resume == nil:
				p.resume, _ = iter.Pull(l.relayer(p))
				p.resume()
			default:
				p.resume()
			}
		}
	}
}

// relayOnce is the event-loop way: read what is ready, write it on.
func (l *loop) relayOnce(p *pair) {
	r, err := l.read(p.ready)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if r <= 0 || err != nil || writeAll(p.other(p.ready), l.buf[:r], l.raw) != nil {
		l.close(p)
	}
}

// wait is epoll_wait for the loop. In raw mode a zero-timeout call is
// made first with RawSyscall6, which does not tell the scheduler; under
// load it usually finds events, and the blocking call below, which does
// tell it (entersyscall: the P may be handed to another thread and must
// be taken back after), is made only when there is nothing to do.
func (l *loop) wait(events []syscall.EpollEvent) (int, error) {
	if l.raw {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.ep),
			uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if e == 0 && n > 0 {
			return int(n), nil
		}
	}
	return syscall.EpollWait(l.ep, events, -1)
}

// read reads the ready fd into the loop's buffer.
func (l *loop) read(fd int) (int, error) {
	return readFd(fd, l.buf[:], l.raw)
}

// readFd and writeFd are read(2) and write(2) on a non-blocking fd.
func readFd(fd int, p []byte, raw bool) (int, error)  { return rw(syscall.SYS_READ, fd, p, raw) }
func writeFd(fd int, p []byte, raw bool) (int, error) { return rw(syscall.SYS_WRITE, fd, p, raw) }

// rw makes system call sysno on fd and p: through RawSyscall when raw,
// else through Syscall, as syscall.Read and syscall.Write do.
func rw(sysno uintptr, fd int, p []byte, raw bool) (int, error) {
	call := syscall.Syscall
	if raw {
		call = syscall.RawSyscall
	}
	n, _, e := call(sysno, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// relayer is the coroutine way: code written as if its reads blocked, as
// a proxy session's is; where a read would block, it yields to the loop,
// which resumes it once one of its sockets is readable.
func (l *loop) relayer(p *pair) iter.Seq[struct{}] {
	return func(yield func(struct{}) bool) {
		for {
			r, err := l.read(p.ready)
			switch {
			case err == syscall.EAGAIN || err == syscall.EINTR:
				if !yield(struct{}{}) {
					return
				}
			case r <= 0 || err != nil || writeAll(p.other(p.ready), l.buf[:r], l.raw) != nil:
				l.close(p)
				return
			}
		}
	}
}

// writeAll writes p to the non-blocking fd, waiting in poll when the
// socket buffer is full.
func writeAll(fd int, p []byte, raw bool) error {
	for len(p) > 0 {
		n, err := writeFd(fd, p, raw)
		switch {
		case err == syscall.EAGAIN:
			pfd := pollFd{fd: int32(fd), events: pollOut}
			if _, _, e := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, ^uintptr(0)); e != 0 && e != syscall.EINTR {
				return e
			}
		case err == syscall.EINTR:
		case err != nil:
			return err
		default:
			p = p[n:]
		}
	}
	return nil
}

func (l *loop) close(p *pair) {
	l.mu.Lock()
	delete(l.pairs, p.cfd)
	delete(l.pairs, p.bfd)
	l.mu.Unlock()
	syscall.Close(p.cfd) // closing removes it from the epoll set
	syscall.Close(p.bfd)
}

// detach returns a non-blocking duplicate of c's socket and closes c, so
// that Go's netpoller no longer watches it.
func detach(c net.Conn) int {
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		log.Fatal(err)
	}
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		log.Fatal(err)
	}
	f.Close()
	c.Close()
	if err := syscall.SetNonblock(fd, true); err != nil {
		log.Fatal(err)
	}
	return fd
}

// pollFd is struct pollfd from poll(2).
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const pollOut = 0x4 // POLLOUT
