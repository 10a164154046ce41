//! Batched UDP receive and send (recvmmsg/sendmmsg): one system call
//! moves up to [`BATCH`] datagrams. Under load the kernel work per query
//! is most of pzdns's CPU (docs/PERFORMANCE.md, "Profiles"); NSD and Knot
//! batch the same way. Elsewhere than Linux a batch is one datagram.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram read (EDNS clients rarely send more than a few hundred bytes).
pub const RECV_BUFFER: usize = 4096;

/// The kernel's view of a batch: message headers pointing at I/O vectors
/// and addresses. Boxed, so the pointers between them (set once) stay
/// valid wherever the owner moves; re-zeroing ~6 KiB of them per call
/// was a tenth of the CPU at 10k qps.
struct Headers {
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    hdrs: Box<[libc::mmsghdr; BATCH]>,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into memory
// owned by the same `Headers` (or its owner's buffers), never shared.
unsafe impl Send for Headers {}

impl Headers {
    fn new() -> Self {
        // SAFETY: all-zero is a valid value of these C structs.
        let mut h = Headers {
            addrs: Box::new(unsafe { std::mem::zeroed() }),
            iovs: Box::new(unsafe { std::mem::zeroed() }),
            hdrs: Box::new(unsafe { std::mem::zeroed() }),
        };
        for i in 0..BATCH {
            h.hdrs[i].msg_hdr.msg_iov = &mut h.iovs[i];
            h.hdrs[i].msg_hdr.msg_iovlen = 1;
            h.hdrs[i].msg_hdr.msg_name = (&mut h.addrs[i] as *mut libc::sockaddr_storage).cast();
        }
        h
    }
}

/// Buffers for one batch of received datagrams.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    srcs: [Option<SocketAddr>; BATCH],
    h: Headers,
    /// Headers the last call filled (the kernel rewrote their name lengths).
    used: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        let mut bufs = vec![0u8; BATCH * RECV_BUFFER].into_boxed_slice();
        let mut h = Headers::new();
        for i in 0..BATCH {
            h.iovs[i].iov_base = bufs[i * RECV_BUFFER..].as_mut_ptr().cast();
            h.iovs[i].iov_len = RECV_BUFFER;
            h.hdrs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        RecvBatch { bufs, lens: [0; BATCH], srcs: [None; BATCH], h, used: 0 }
    }
}

/// The source address the kernel wrote into `ss` (`len` bytes), read by
/// socket2 (`None`: not IPv4 or IPv6).
fn from_storage(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    // SAFETY: socket2's storage is a transparent wrapper of the same
    // sockaddr_storage, and the kernel initialised `len` bytes of it.
    let sa = unsafe { socket2::SockAddr::new(std::ptr::read((ss as *const libc::sockaddr_storage).cast()), len) };
    sa.as_socket()
}

impl RecvBatch {
    /// Reads the datagrams waiting on `fd` (non-blocking): how many, or
    /// `WouldBlock` when there are none.
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // Only the headers of received datagrams were changed by the kernel.
        for h in self.h.hdrs[..self.used].iter_mut() {
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        self.used = 0;
        // SAFETY: `hdrs` holds BATCH headers whose vectors point into
        // `self.bufs` (RECV_BUFFER bytes each) and names into `addrs`.
        let n = unsafe { libc::recvmmsg(fd, self.h.hdrs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(BATCH);
        self.used = n;
        for i in 0..n {
            self.lens[i] = (self.h.hdrs[i].msg_len as usize).min(RECV_BUFFER);
            self.srcs[i] = from_storage(&self.h.addrs[i], self.h.hdrs[i].msg_hdr.msg_namelen);
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the buffer and address outlive the call, lengths match.
        let n = unsafe {
            libc::recvfrom(
                fd,
                self.bufs.as_mut_ptr().cast(),
                RECV_BUFFER,
                libc::MSG_DONTWAIT,
                (&mut addr as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.lens[0] = n as usize;
        self.srcs[0] = from_storage(&addr, len);
        Ok(1)
    }

    /// Datagram `i` of the last `recv` and its source (`None`: not IP).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        (&self.bufs[i * RECV_BUFFER..i * RECV_BUFFER + self.lens[i]], self.srcs[i])
    }
}

/// Responses waiting to be sent in one batch.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    dsts: [SocketAddr; BATCH],
    pub len: usize,
    h: Headers,
}

impl Default for SendBatch {
    fn default() -> Self {
        let unset = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        SendBatch { bufs: (0..BATCH).map(|_| Vec::with_capacity(2048)).collect(), dsts: [unset; BATCH], len: 0, h: Headers::new() }
    }
}

impl SendBatch {
    /// Empties the batch (its buffers are kept for the next).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The buffer for the next response (its caller fills it, then calls
    /// [`SendBatch::push`]); `None` when the batch is full.
    pub fn next_buf(&mut self) -> Option<&mut Vec<u8>> {
        self.bufs.get_mut(self.len)
    }

    /// Queues the response written into the last `next_buf` for `dst`.
    pub fn push(&mut self, dst: SocketAddr) {
        if self.len < BATCH {
            self.dsts[self.len] = dst;
            self.len += 1;
        }
    }

    /// Response `i` and its destination.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddr) {
        (&self.bufs[i], self.dsts[i])
    }

    /// Sends responses `from..len` on `fd` (non-blocking): how many went.
    #[cfg(target_os = "linux")]
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        let h = &mut self.h;
        let k = self.len.saturating_sub(from);
        for j in 0..k {
            let i = from + j;
            let sa = socket2::SockAddr::from(self.dsts[i]);
            // SAFETY: `sa` is a valid socket address of `sa.len()` bytes,
            // which fits in a sockaddr_storage.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    sa.as_ptr().cast::<u8>(),
                    (&mut h.addrs[j] as *mut libc::sockaddr_storage).cast::<u8>(),
                    sa.len() as usize,
                )
            };
            h.iovs[j].iov_base = self.bufs[i].as_ptr() as *mut libc::c_void;
            h.iovs[j].iov_len = self.bufs[i].len();
            h.hdrs[j].msg_hdr.msg_namelen = sa.len();
        }
        if k == 0 {
            return Ok(0);
        }
        // SAFETY: `hdrs[..k]` point at the responses and addresses set above.
        let n = unsafe { libc::sendmmsg(fd, h.hdrs.as_mut_ptr(), k as libc::c_uint, libc::MSG_DONTWAIT) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        let sa = socket2::SockAddr::from(self.dsts[from]);
        // SAFETY: buffer and address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(fd, self.bufs[from].as_ptr().cast(), self.bufs[from].len(), libc::MSG_DONTWAIT, sa.as_ptr().cast(), sa.len())
        };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(1) }
    }
}
