//! FNV-1a (64-bit): the one hash of the project, for content-seeded noise and for identifying files in manifests
//! (files a 64-bit word at a time, [`fnv1a_words`]). Not cryptographic; stable across platforms and builds.

/// A running FNV-1a hash.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf29ce484222325)
    }
}

impl Fnv1a {
    /// Adds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }

    /// Adds the little-endian bits of each float.
    pub fn write_f32s(&mut self, values: impl IntoIterator<Item = f32>) {
        for v in values {
            self.write(&v.to_bits().to_le_bytes());
        }
    }

    /// The hash so far.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    h.write(bytes);
    h.finish()
}

/// FNV-1a over the little-endian 64-bit words of `bytes` (then the remaining bytes one by one, then the length):
/// the digest of whole files. Eight times fewer multiplications than [`fnv1a`] on the same bytes (a 31 MB input
/// in about 5 ms instead of 40), and as stable.
pub fn fnv1a_words(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    for w in words {
        h.0 ^= u64::from_le_bytes(w.try_into().expect("chunks of 8"));
        h.0 = h.0.wrapping_mul(0x100000001b3);
    }
    h.write(tail);
    h.write(&(bytes.len() as u64).to_le_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_digests_see_every_byte_and_the_length() {
        let base: Vec<u8> = (0..100u8).collect();
        let d = fnv1a_words(&base);
        for i in [0, 7, 8, 63, 64, 95, 99] {
            let mut b = base.clone();
            b[i] ^= 1;
            assert_ne!(fnv1a_words(&b), d, "byte {i}");
        }
        assert_ne!(
            fnv1a_words(&base[..96]),
            fnv1a_words(&[&base[..96], &[0u8; 8][..]].concat())
        );
        assert_ne!(fnv1a_words(&[]), fnv1a_words(&[0]));
        assert_eq!(fnv1a_words(&base), d, "stable");
        // Pinned: a change of the function would make every manifest look like a different run.
        assert_eq!(fnv1a_words(b"lrp"), 0x69c1_378a_9555_4192);
        let twenty: Vec<u8> = (0..20u8).collect();
        assert_eq!(fnv1a_words(&twenty), 0xd2c9_ffc8_212d_16f5);
    }
}
