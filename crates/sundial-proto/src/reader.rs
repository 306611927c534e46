//! The one byte reader and writer every parser and serializer goes through.
//!
//! Reading never indexes unchecked: each take either yields the bytes asked for
//! or `None`, and the cursor only moves on success. Writing goes into a buffer
//! the caller owns and fails, instead of panicking, when it is too small.

/// A cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread bytes, without consuming them.
    pub fn peek_rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Takes `n` bytes, or nothing if fewer remain.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.buf.split_at_checked(n)?;
        self.buf = tail;
        Some(head)
    }

    /// Takes exactly `N` bytes as an array.
    pub fn take_array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.buf.split_first_chunk::<N>()?;
        self.buf = tail;
        Some(*head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take_array::<1>().map(|[b]| b)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take_array().map(u16::from_be_bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take_array().map(u32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take_array().map(u64::from_be_bytes)
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// The caller's buffer was too small for what had to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("output buffer too small")]
pub struct BufferTooSmall;

/// A cursor that writes into a caller-owned buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Room left in the buffer.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// What has been written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.pos).unwrap_or_default()
    }

    pub fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let end = self.pos.checked_add(bytes.len()).ok_or(BufferTooSmall)?;
        let dst = self.buf.get_mut(self.pos..end).ok_or(BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    pub fn put_u8(&mut self, v: u8) -> Result<(), BufferTooSmall> {
        self.put(&[v])
    }

    pub fn put_u16(&mut self, v: u16) -> Result<(), BufferTooSmall> {
        self.put(&v.to_be_bytes())
    }

    pub fn put_u32(&mut self, v: u32) -> Result<(), BufferTooSmall> {
        self.put(&v.to_be_bytes())
    }

    pub fn put_u64(&mut self, v: u64) -> Result<(), BufferTooSmall> {
        self.put(&v.to_be_bytes())
    }

    /// Writes `n` zero bytes.
    pub fn put_zeros(&mut self, n: usize) -> Result<(), BufferTooSmall> {
        let end = self.pos.checked_add(n).ok_or(BufferTooSmall)?;
        let dst = self.buf.get_mut(self.pos..end).ok_or(BufferTooSmall)?;
        dst.fill(0);
        self.pos = end;
        Ok(())
    }

    /// Reserves `n` bytes to fill in later (e.g. a length), returning their offset.
    pub fn reserve(&mut self, n: usize) -> Result<usize, BufferTooSmall> {
        let at = self.pos;
        self.put_zeros(n)?;
        Ok(at)
    }

    /// Overwrites bytes already written at `at`.
    pub fn patch(&mut self, at: usize, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let end = at.checked_add(bytes.len()).ok_or(BufferTooSmall)?;
        if end > self.pos {
            return Err(BufferTooSmall);
        }
        let dst = self.buf.get_mut(at..end).ok_or(BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        Ok(())
    }

    /// The whole underlying buffer, for in-place work such as encryption.
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.buf
    }

    /// Moves the cursor to `pos` (at most the buffer length), e.g. after
    /// in-place encryption wrote past it.
    pub fn set_len(&mut self, pos: usize) -> Result<(), BufferTooSmall> {
        if pos > self.buf.len() {
            return Err(BufferTooSmall);
        }
        self.pos = pos;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_overreads() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.take(2), None);
        assert_eq!(r.u8(), Some(3));
        assert!(r.is_empty());
    }

    #[test]
    fn writer_refuses_overflow() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.put_u16(0xabcd).unwrap();
        assert_eq!(w.put_u16(1), Err(BufferTooSmall));
        w.put_u8(7).unwrap();
        assert_eq!(w.written(), &[0xab, 0xcd, 7]);
        assert_eq!(w.patch(2, &[1, 2]), Err(BufferTooSmall));
    }
}
