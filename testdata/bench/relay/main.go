// Command relay is a byte-for-byte TCP relay with no protocol work at all:
// each client connection gets its own backend connection, and bytes are
// copied both ways until either side closes. testdata/bench/pgbench.sh
// runs pgbench through it to show what a proxy costs before it does
// anything a proxy must do (parse, route, pool), in two designs:
//
//	-mode goroutine  two goroutines per client on Go's netpoller, the
//	                 design shardproxy's sessions use (the floor for it);
//	-mode epoll      one locked OS thread in a level-triggered epoll loop
//	                 with raw reads and writes, PgBouncer's design.
//
// It is a measuring tool, not a product: no TLS, no timeouts, Linux only.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

func main() {
	mode := flag.String("mode", "goroutine", "goroutine | epoll")
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
	case "epoll":
		serveEpoll(ln, *backend)
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

// serveEpoll accepts on this goroutine and relays on one locked thread.
func serveEpoll(ln net.Listener, backend string) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		log.Fatal(err)
	}
	l := &loop{ep: ep, peer: map[int]int{}}
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
		l.add(detach(c), detach(b))
	}
}

type loop struct {
	ep   int
	mu   sync.Mutex // peer is written by the accepting goroutine
	peer map[int]int
}

func (l *loop) add(cfd, bfd int) {
	l.mu.Lock()
	l.peer[cfd], l.peer[bfd] = bfd, cfd
	l.mu.Unlock()
	for _, fd := range []int{cfd, bfd} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			log.Fatal(err)
		}
	}
}

func (l *loop) run() {
	runtime.LockOSThread()
	buf := make([]byte, 64<<10)
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(l.ep, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			l.mu.Lock()
			to, ok := l.peer[fd]
			l.mu.Unlock()
			if !ok {
				continue // closed earlier in this batch with its peer
			}
			r, err := syscall.Read(fd, buf)
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			if r <= 0 || err != nil || writeAll(to, buf[:r]) != nil {
				l.close(fd, to)
			}
		}
	}
}

// writeAll writes p to the non-blocking fd, waiting in poll when the
// socket buffer is full.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := syscall.Write(fd, p)
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

func (l *loop) close(a, b int) {
	l.mu.Lock()
	delete(l.peer, a)
	delete(l.peer, b)
	l.mu.Unlock()
	syscall.Close(a) // closing removes it from the epoll set
	syscall.Close(b)
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
