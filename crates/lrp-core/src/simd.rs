//! Elementwise passes over slices, each with an AVX-512 build of the same loop chosen at run time. Each value is one
//! IEEE operation (a division, an addition, a comparison), which rounds the same at every vector width: the bits are
//! those of the plain loop, only more values are done per instruction (the plain loop compiles to SSE2 for the
//! x86-64 baseline).

/// Whether this processor runs the AVX-512 builds (AVX-512F, runtime-detected).
pub fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `s[i] /= z[i] + e·sign(z[i])` (the ε rule's stabilised division; `z = 0` counts as positive), or with `e = 0`
/// `s[i] / z[i]` where `z[i] ≠ 0` and 0 where it is (nothing flows through a zero pre-activation).
pub fn divide_stabilised(s: &mut [f32], z: &[f32], e: f32) {
    assert_eq!(s.len(), z.len(), "one denominator per value");
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX-512F is present (checked just above).
        return unsafe { divide_wide(s, z, e) };
    }
    divide_plain(s, z, e)
}

/// `z + e·sgn(z)`, `sgn(0) = +1`: the rules' stabilised denominator.
#[inline(always)]
pub fn stabilised(z: f32, e: f32) -> f32 {
    if z >= 0.0 { z + e } else { z - e }
}

/// `s / z`, or 0 where `z = 0`: LRP-0's share.
#[inline(always)]
pub fn share_or_zero(s: f32, z: f32) -> f32 {
    if z == 0.0 { 0.0 } else { s / z }
}

#[inline(always)]
fn divide_plain(s: &mut [f32], z: &[f32], e: f32) {
    // Two loops, so that neither tests `e` per value.
    if e == 0.0 {
        for (s, &z) in s.iter_mut().zip(z) {
            *s = share_or_zero(*s, z);
        }
    } else {
        for (s, &z) in s.iter_mut().zip(z) {
            *s /= stabilised(z, e);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn divide_wide(s: &mut [f32], z: &[f32], e: f32) {
    divide_plain(s, z, e)
}

/// How many values are NaN or ±∞ (all-ones exponent bits, which only they have).
pub fn count_non_finite(v: &[f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX-512F is present (checked just above).
        return unsafe { count_non_finite_wide(v) };
    }
    count_non_finite_plain(v)
}

/// The index of the first NaN or ±∞: the vectorised count first (all finite is the common case, and a plain search
/// for it was 10.6% of loading ResNet-50), the element looked for only when there is one.
pub fn first_non_finite(v: &[f32]) -> Option<usize> {
    if count_non_finite(v) == 0 {
        return None;
    }
    v.iter().position(|x| !x.is_finite())
}

#[inline(always)]
fn count_non_finite_plain(v: &[f32]) -> usize {
    // In blocks whose count fits a u32 lane, which the compiler vectorises.
    v.chunks(1 << 16)
        .map(|c| {
            c.iter()
                .map(|x| (x.to_bits() & 0x7f80_0000 == 0x7f80_0000) as u32)
                .sum::<u32>() as usize
        })
        .sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn count_non_finite_wide(v: &[f32]) -> usize {
    count_non_finite_plain(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first non-finite value's index, wherever it stands (vector body or tail), before any later one; none in
    /// finite data, the largest finite values and subnormals included.
    #[test]
    fn the_first_non_finite_value_is_found() {
        let base: Vec<f32> = (0..100)
            .map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MIN_POSITIVE / 4.0 })
            .collect();
        assert_eq!(first_non_finite(&base), None);
        for at in [0, 15, 16, 63, 99] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v = base.clone();
                v[at] = bad;
                v[99.max(at)] = f32::NAN;
                assert_eq!(first_non_finite(&v), Some(at), "{bad} at {at}");
            }
        }
        assert_eq!(first_non_finite(&[]), None);
    }

    /// The wide build gives the plain loop's bits, for every special value against every other.
    #[test]
    fn the_wide_build_is_the_plain_loop_bit_for_bit() {
        let special = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            1e-40,
            -1e-40,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            3.7,
            -2.25e-3,
        ];
        let (mut s, mut z) = (Vec::new(), Vec::new());
        for &a in &special {
            for &b in &special {
                s.push(a);
                z.push(b);
            }
        }
        // Lengths that leave every remainder after whole vectors.
        for len in [s.len(), s.len() - 1, 17, 16, 15, 1, 0] {
            for e in [0.0f32, 1e-6, 0.25] {
                let mut plain = s[..len].to_vec();
                divide_plain(&mut plain, &z[..len], e);
                let mut fast = s[..len].to_vec();
                divide_stabilised(&mut fast, &z[..len], e);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&plain), bits(&fast), "len {len}, e {e}");
            }
            let bad = s[..len].iter().filter(|x| !x.is_finite()).count();
            assert_eq!(count_non_finite(&s[..len]), bad, "len {len}");
            assert_eq!(count_non_finite_plain(&s[..len]), bad, "len {len}");
        }
    }
}
