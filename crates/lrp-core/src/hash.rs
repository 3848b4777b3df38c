//! FNV-1a (64-bit): the hash of content-seeded noise and of temporary file names. Not cryptographic; stable across
//! platforms and builds. (Batch manifests identify files by XXH3-128, `lrp_batch::digest_bytes`: FNV-1a reads a
//! byte, or a word, per multiplication in one chain, far below memory speed.)

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
