//! Read-only shared mappings of served files. The mapping is an *identifier*: its addresses tell the
//! IO layer which file and offset a body slice stands for, so the bytes can leave by sendfile(2).
//! Userspace never reads through it (see [`Mapping`]'s contract).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Buf;

/// A `PROT_READ`, `MAP_SHARED` mapping of a whole file, unmapped on drop.
///
/// # Contract
/// The file may be truncated or rewritten by other processes while it is mapped. Reading a page
/// past the new end of file raises SIGBUS and kills the process, so **no userspace code may ever
/// read these bytes**. The crate only hands the slice to hyper as a `Buf` that the IO layer turns
/// into sendfile(2); if a slice ever reached write(2)/writev(2) instead, the *kernel* would copy
/// it and report EFAULT on a truncated page rather than fault. The copy counter (`Stats`) makes
/// such a miss visible, and tests assert it stays at zero.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is immutable from this process (PROT_READ) and never dereferenced by
// userspace; sharing the address between threads cannot create a data race in this process.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only exposes the address range.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map the first `len` bytes of `file` read-only. `len` must be non-zero.
    pub fn map_readonly(file: &File, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map an empty file",
            ));
        }
        #[cfg(feature = "fault-injection")]
        if super::fault::nomap(std::os::fd::AsFd::as_fd(file)) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        // SAFETY: a fresh mapping at an address the kernel chooses (NULL hint), read-only, of a
        // descriptor that stays open for the call. No existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty files are never mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start address, for recognising slices of this mapping.
    pub fn base(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The slice `[start, end)` of the mapping, to be used as a token only (see the contract).
    /// Private to `sys`: outside it, the bytes are reachable only as a [`MappedRange`]'s
    /// `Buf::chunk` (for hyper's write queue) or through [`send_mapped`] (a kernel copy).
    ///
    /// # Panics
    /// If the range is not inside the mapping.
    fn token_slice(&self, start: usize, end: usize) -> &[u8] {
        assert!(start <= end && end <= self.len, "slice outside mapping");
        // SAFETY: `[start, end)` lies inside a live mapping of `len` bytes (asserted above) that
        // outlives the returned borrow of `self`. The bytes are never read by userspace (type
        // contract); the kernel reads them only through sendfile's page-cache path or, on a
        // missed interception, through a kernel copy that fails with EFAULT instead of SIGBUS.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) }
    }

    /// Whether every page of `[offset, offset + len)` is in the page cache (mincore(2), which
    /// never faults pages in). Errors count as resident so that a failed probe never stalls.
    pub fn is_resident(&self, offset: usize, len: usize) -> bool {
        const PAGE: usize = 4096;
        const MAX_PAGES: usize = 1024;
        if len == 0 || offset >= self.len {
            return true;
        }
        let page_start = offset / PAGE * PAGE;
        let end = (offset + len).min(self.len);
        let pages = (end - page_start).div_ceil(PAGE).min(MAX_PAGES);
        let mut vec = [0u8; MAX_PAGES];
        // SAFETY: the probed range starts on a page boundary inside the mapping and spans at most
        // `pages` pages of it; `vec` has room for one byte per probed page (pages <= MAX_PAGES).
        let rc = unsafe {
            libc::mincore(
                self.ptr.as_ptr().add(page_start).cast(),
                (pages * PAGE).min(self.len - page_start),
                vec.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return true;
        }
        vec[..pages].iter().all(|b| b & 1 == 1)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created by `map_readonly` and unmapped only here.
        // Every borrowed token slice borrows `self`, so none outlives this call.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// What owns a mapping (an open file), and so keeps it alive for a [`MappedRange`].
pub trait MappingOwner {
    /// The owner's mapping, if it has one.
    fn mapping(&self) -> Option<&Mapping>;
}

/// A byte range `[pos, end)` of an owner's mapping, as a response body chunk.
///
/// Its bytes are reachable only through `Buf::chunk`, whose one consumer is hyper's write queue.
/// The zero-copy design depends on that queue: with `writev(true)` (set where the server builds
/// its hyper connections, never with `pipeline_flush`) hyper hands the slice on to the IO object
/// as an `IoSlice` without reading or copying it, and the IO object recognises the address and
/// sends the range by sendfile(2). hyper documents the strategy but does not promise never to
/// copy a `Buf`; if it ever did, the kernel (not userspace) would read the bytes in write(2),
/// failing with EFAULT on a truncated page, and the `copied_bytes` counter and the zero-copy
/// tests would show it.
pub struct MappedRange<O: MappingOwner> {
    owner: Arc<O>,
    pos: usize,
    end: usize,
}

impl<O: MappingOwner> MappedRange<O> {
    /// The range `[pos, end)` of `owner`'s mapping (empty if it has none).
    pub fn new(owner: Arc<O>, pos: usize, end: usize) -> Self {
        debug_assert!(owner
            .mapping()
            .is_some_and(|m| pos <= end && end <= m.len()));
        MappedRange { owner, pos, end }
    }

    /// The owner of the mapping.
    pub fn owner(&self) -> &Arc<O> {
        &self.owner
    }
}

impl<O: MappingOwner> Buf for MappedRange<O> {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn chunk(&self) -> &[u8] {
        match self.owner.mapping() {
            Some(map) if self.end <= map.len() => map.token_slice(self.pos, self.end),
            _ => &[],
        }
    }

    fn advance(&mut self, n: usize) {
        assert!(
            n <= self.end - self.pos,
            "advance past the end of a file range"
        );
        self.pos += n;
    }
}

/// Send `[start, end)` of `map` with one sendmsg: the kernel copies from the mapping (for files
/// sendfile cannot splice). A truncated page gives EFAULT, never SIGBUS, and no userspace code
/// reads the bytes.
pub fn send_mapped(
    sock: std::os::fd::BorrowedFd<'_>,
    map: &Mapping,
    start: usize,
    end: usize,
) -> io::Result<usize> {
    let slice = map.token_slice(start, end);
    super::send_vectored(sock, &[std::io::IoSlice::new(slice)], false)
}
