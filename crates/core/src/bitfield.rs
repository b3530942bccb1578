//! A fixed-length bit set in BitTorrent wire order (bit 0 is the high bit of byte 0).

use crate::PieceIndex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    #[error("bitfield has {got} bytes, expected {expected}")]
    WrongLength { got: usize, expected: usize },
    #[error("bitfield has spare bits set past the last piece")]
    SpareBitsSet,
}

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

impl Bitfield {
    pub fn new(len: u32) -> Self {
        Self { bytes: vec![0; (len as usize).div_ceil(8)], len, ones: 0 }
    }

    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(PieceIndex::new_unchecked(i));
        }
        b
    }

    /// Parses a wire bitfield for `len` pieces: exact byte length, spare bits clear.
    pub fn from_wire(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = (len as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength { got: bytes.len(), expected });
        }
        let spare = expected * 8 - len as usize;
        if spare > 0 && bytes[expected - 1] & ((1u8 << spare) - 1) != 0 {
            return Err(BitfieldError::SpareBitsSet);
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Self { bytes: bytes.to_vec(), len, ones })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn len(&self) -> u32 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn count_ones(&self) -> u32 {
        self.ones
    }
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// False for indices out of range.
    pub fn get(&self, i: PieceIndex) -> bool {
        let i = i.as_usize();
        i < self.len as usize && self.bytes[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; returns whether it changed. Out-of-range indices are ignored.
    pub fn set(&mut self, i: PieceIndex) -> bool {
        if self.get(i) || i.get() >= self.len {
            return false;
        }
        let i = i.as_usize();
        self.bytes[i / 8] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    /// Clears bit `i`; returns whether it changed.
    pub fn clear(&mut self, i: PieceIndex) -> bool {
        if !self.get(i) {
            return false;
        }
        let i = i.as_usize();
        self.bytes[i / 8] &= !(0x80 >> (i % 8));
        self.ones -= 1;
        true
    }

    pub fn iter_ones(&self) -> impl Iterator<Item = PieceIndex> + '_ {
        (0..self.len).map(PieceIndex::new_unchecked).filter(|&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spare_bits_rejected() {
        assert_eq!(Bitfield::from_wire(&[0xff], 7), Err(BitfieldError::SpareBitsSet));
        assert!(Bitfield::from_wire(&[0xfe], 7).is_ok());
        assert!(matches!(Bitfield::from_wire(&[0xfe, 0], 7), Err(BitfieldError::WrongLength { .. })));
    }

    proptest! {
        #[test]
        fn wire_round_trip(len in 1u32..300, seed in proptest::collection::vec(any::<u32>(), 0..50)) {
            let mut b = Bitfield::new(len);
            for s in seed { b.set(PieceIndex::new_unchecked(s % len)); }
            let back = Bitfield::from_wire(b.as_bytes(), len).unwrap();
            prop_assert_eq!(back.count_ones(), b.iter_ones().count() as u32);
            prop_assert_eq!(back, b);
        }
    }
}
