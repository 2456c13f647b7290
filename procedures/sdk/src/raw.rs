//! The raw key-value API: byte keys, byte values, one host call each.

use crate::host;

/// First guess for a value's size; `get_raw` retries once with the exact
/// size if the value is larger.
const GET_INITIAL_CAP: usize = 128;

/// Reads `key`. Sees this transaction's own earlier writes.
///
/// Returns `None` if the key is absent (or was deleted by this
/// transaction).
pub fn get_raw(key: &[u8]) -> Option<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(GET_INITIAL_CAP);
    get_into(key, &mut buf).then_some(buf)
}

/// Reads `key`'s value into `buf` (replacing its contents, reusing its
/// allocation); returns whether the key exists.
pub(crate) fn get_into(key: &[u8], buf: &mut Vec<u8>) -> bool {
    buf.clear();
    if buf.capacity() < GET_INITIAL_CAP {
        buf.reserve(GET_INITIAL_CAP);
    }
    loop {
        // SAFETY: the host writes at most `buf.capacity()` bytes to `dst`.
        let n = unsafe {
            host::get(
                key.as_ptr(),
                host::len_i32(key.len()),
                buf.as_mut_ptr(),
                host::len_i32(buf.capacity()),
            )
        };
        if n < 0 {
            return false;
        }
        let n = usize::try_from(n)
            .unwrap_or_else(|_| crate::abort("host returned an impossible value length"));
        if n <= buf.capacity() {
            // SAFETY: the host copied exactly `n <= capacity` bytes.
            unsafe { buf.set_len(n) };
            return true;
        }
        buf.reserve_exact(n);
    }
}

/// Writes `key = value`. The write is buffered by the host and becomes
/// visible to later reads in this transaction; it is dropped if the
/// transaction aborts.
pub fn put_raw(key: &[u8], value: &[u8]) {
    // SAFETY: both slices are valid for reads of their lengths.
    unsafe {
        host::put(
            key.as_ptr(),
            host::len_i32(key.len()),
            value.as_ptr(),
            host::len_i32(value.len()),
        )
    }
}

/// Deletes `key` (a no-op if it is absent). Buffered like [`put_raw`].
pub fn delete_raw(key: &[u8]) {
    // SAFETY: the slice is valid for reads of its length.
    unsafe { host::delete(key.as_ptr(), host::len_i32(key.len())) }
}

/// Iterates over the entries with `start <= key < end` (no upper bound if
/// `end` is `None`) in ascending byte order of their keys.
///
/// Entries are fetched from the host lazily, in chunks that grow as the
/// iteration goes on (so reading only the first few entries stays cheap).
/// The iterator sees this transaction's writes made before each chunk is
/// fetched; to update entries while scanning, collect the keys first.
pub fn scan_raw(start: &[u8], end: Option<&[u8]>) -> RawScan {
    RawScan {
        next_start: start.to_vec(),
        end: end.map(<[u8]>::to_vec),
        buf: Vec::new(),
        pos: 0,
        filled: 0,
        limit: SCAN_LIMIT_INITIAL,
        cap: SCAN_CAP_INITIAL,
        done: end.is_some_and(|end| end <= start),
    }
}

/// Iterates over every entry whose key starts with `prefix`, in key order.
pub fn scan_prefix_raw(prefix: &[u8]) -> RawScan {
    let end = prefix_end(prefix);
    scan_raw(prefix, end.as_deref())
}

/// The smallest key greater than every key that starts with `prefix`, or
/// `None` if there is none (`prefix` is empty or all `0xFF`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

const SCAN_LIMIT_INITIAL: i32 = 8;
const SCAN_LIMIT_MAX: i32 = 4096;
const SCAN_CAP_INITIAL: usize = 512;
const SCAN_CAP_MAX: usize = 64 << 10;

/// Iterator returned by [`scan_raw`] and [`scan_prefix_raw`]: yields
/// `(key, value)` pairs in ascending key order.
pub struct RawScan {
    /// Where the next chunk starts: the first key, then last key + `0x00`.
    next_start: Vec<u8>,
    end: Option<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    limit: i32,
    cap: usize,
    done: bool,
}

impl RawScan {
    /// Where the scan starts and ends (for tests of the ranges tables ask
    /// for).
    #[cfg(test)]
    pub(crate) fn bounds(&self) -> (&[u8], Option<&[u8]>) {
        (&self.next_start, self.end.as_deref())
    }

    /// Fetches the next chunk. Returns `false` when there are no more
    /// entries.
    fn refill(&mut self) -> bool {
        let (end_ptr, end_len) = match &self.end {
            Some(end) => (end.as_ptr(), host::len_i32(end.len())),
            None => (core::ptr::null(), ordo_schema::abi::SCAN_NO_END),
        };
        loop {
            if self.buf.len() < self.cap {
                self.buf.resize(self.cap, 0);
            }
            // SAFETY: `buf` is valid for writes of its length, which is what
            // we pass as the capacity.
            let n = unsafe {
                host::scan(
                    self.next_start.as_ptr(),
                    host::len_i32(self.next_start.len()),
                    end_ptr,
                    end_len,
                    self.limit,
                    self.buf.as_mut_ptr(),
                    host::len_i32(self.buf.len()),
                )
            };
            if n == 0 {
                return false;
            }
            if n < 0 {
                // Not even the first entry fits: make room for it.
                let needed = usize::try_from(n.unsigned_abs())
                    .unwrap_or_else(|_| crate::abort("host scan entry too large"));
                if needed <= self.buf.len() {
                    crate::abort("host scan asked for a buffer it already had");
                }
                self.cap = needed.max(self.cap.saturating_mul(2));
                continue;
            }
            let n = usize::try_from(n)
                .ok()
                .filter(|n| *n <= self.buf.len())
                .unwrap_or_else(|| crate::abort("host scan wrote more than the buffer"));
            self.pos = 0;
            self.filled = n;
            // Grow the next chunk: the caller is evidently iterating on.
            self.limit = (self.limit.saturating_mul(2)).min(SCAN_LIMIT_MAX);
            self.cap = (self.cap.saturating_mul(2)).min(SCAN_CAP_MAX).max(self.cap);
            return true;
        }
    }

    fn take_field(&mut self) -> &[u8] {
        let data = &self.buf[..self.filled];
        let Some(len_bytes) = data.get(self.pos..self.pos + 4) else {
            crate::abort("host returned a malformed scan chunk");
        };
        let len = u32::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let start = self.pos + 4;
        let Some(end) = start.checked_add(len).filter(|end| *end <= data.len()) else {
            crate::abort("host returned a malformed scan chunk");
        };
        self.pos = end;
        &self.buf[start..end]
    }
}

impl Iterator for RawScan {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.filled && (self.done || !self.refill()) {
            self.done = true;
            return None;
        }
        let key = self.take_field().to_vec();
        let value = self.take_field().to_vec();
        if self.pos >= self.filled {
            // Continue after the last key of this chunk.
            self.next_start.clear();
            self.next_start.extend_from_slice(&key);
            self.next_start.push(0);
        }
        Some((key, value))
    }
}

impl core::iter::FusedIterator for RawScan {}
