//! Passes over one large value split across the threads of the rayon pool they run in, so that a single photo
//! keeps every core busy between its products (bias additions, the rules' divisions and products, folding,
//! pooling). Parts never split a unit (a plane, a row), so every value gets the same operations in the same order
//! however many parts there are: the results are the same bits as one pass.

use rayon::prelude::*;

/// Below this many values (1 MB of float32) a pass stays on its thread: waking a sleeping worker costs tens of
/// microseconds, what a quarter million additions take (with 64K, RegNet's grouped layers ran 11% slower).
pub const PAR_MIN_VALUES: usize = 1 << 18;

/// How many parts a pass of `work` (values it reads or writes, or 0 to keep it on this thread) over `units` units is
/// cut into: one per thread, or 1.
fn parts(work: usize, units: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads < 2 || units < 2 || work < PAR_MIN_VALUES {
        1
    } else {
        threads.min(units)
    }
}

/// Calls `f(first, part)` on parts of `data` made of whole units of `unit` values (`first`: the index of the part's
/// first unit), in parallel when the pass's `work` (usually `data.len()`; a fold counts the matrix it reads) is
/// large. `data.len()` must be a multiple of `unit` (`unit > 0`).
pub fn units_mut<T: Send>(data: &mut [T], unit: usize, work: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    assert!(unit > 0 && data.len().is_multiple_of(unit), "whole units");
    let units = data.len() / unit;
    let k = parts(work, units);
    if k == 1 {
        f(0, data);
        return;
    }
    let per = units.div_ceil(k);
    data.par_chunks_mut(per * unit)
        .enumerate()
        .for_each(|(i, part)| f(i * per, part));
}

/// Calls `f(r, row)` on every row `r` of `m` (rows contiguous), the rows split over the threads when the pass's
/// `work` (usually the matrix's size; 0 keeps it on this thread) is large.
pub fn rows_mut<T: Send>(m: &mut ndarray::ArrayViewMut2<T>, work: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let rows = m.nrows();
    let k = parts(work, rows);
    let each = |first: usize, mut part: ndarray::ArrayViewMut2<T>| {
        for (r, mut row) in part.rows_mut().into_iter().enumerate() {
            f(first + r, row.as_slice_mut().expect("contiguous rows"));
        }
    };
    if k == 1 {
        each(0, m.view_mut());
        return;
    }
    let per = rows.div_ceil(k);
    rayon::scope(|scope| {
        for (i, part) in m.axis_chunks_iter_mut(ndarray::Axis(0), per).enumerate() {
            let each = &each;
            scope.spawn(move |_| each(i * per, part));
        }
    });
}

/// Calls `f(a_part, b_part)` on matching parts of `a` and `b` (the same length), in parallel when they are large:
/// for elementwise passes.
pub fn zip_mut<T: Send, U: Sync>(a: &mut [T], b: &[U], f: impl Fn(&mut [T], &[U]) + Sync) {
    assert_eq!(a.len(), b.len(), "matching values");
    let k = parts(a.len(), a.len());
    if k == 1 {
        f(a, b);
        return;
    }
    // Parts of whole 64-byte lines.
    let per = a.len().div_ceil(k).next_multiple_of(16);
    a.par_chunks_mut(per).zip(b.par_chunks(per)).for_each(|(a, b)| f(a, b));
}

/// `f(a, b)` for every value of `a` and the matching one of `b` (broadcast to `a`'s shape), split over the threads
/// when both are large and in standard order: `a += b`, `a *= b` on a photo's values.
pub fn zip_with(a: &mut ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>, f: impl Fn(&mut f32, f32) + Sync) {
    if a.shape() == b.shape()
        && let (Some(al), Some(bl)) = (a.as_slice_mut(), b.as_slice())
    {
        zip_mut(al, bl, |a, b| a.iter_mut().zip(b).for_each(|(a, &b)| f(a, b)));
        return;
    }
    a.zip_mut_with(b, |a, &b| f(a, b));
}

/// `f` of every value of `x`, into a new vector, split over the threads when `x` is large.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    zip_mut(&mut out.spare_capacity_mut()[..x.len()], x, |o, x| {
        for (o, &v) in o.iter_mut().zip(x) {
            o.write(f(v));
        }
    });
    // SAFETY: the parts cover the first `x.len()` values, and each part wrote every one of its values.
    unsafe { out.set_len(x.len()) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
    }

    /// Every unit is visited once, with its own index, whatever the threads and sizes; small data stays whole.
    #[test]
    fn units_are_visited_once_with_their_index() {
        for threads in [1, 2, 3] {
            for (units, unit) in [(1, 5), (3, 100_000), (7, 40_000), (64, 4096), (5, 1), (2, 1000)] {
                let mut data = vec![0u32; units * unit];
                let calls = std::sync::Mutex::new(Vec::new());
                pool(threads).install(|| {
                    units_mut(&mut data, unit, units * unit, |first, part| {
                        calls.lock().unwrap().push((first, part.len()));
                        for (i, u) in part.chunks_exact_mut(unit).enumerate() {
                            u.iter_mut().for_each(|v| *v += (first + i) as u32 + 1);
                        }
                    })
                });
                for (i, u) in data.chunks_exact(unit).enumerate() {
                    assert!(
                        u.iter().all(|&v| v == i as u32 + 1),
                        "unit {i} of {units}×{unit}, {threads} threads"
                    );
                }
                let calls = calls.into_inner().unwrap();
                let expect = if threads > 1 && units > 1 && units * unit >= PAR_MIN_VALUES {
                    threads.min(units)
                } else {
                    1
                };
                assert_eq!(
                    calls.len(),
                    expect,
                    "parts of {units}×{unit} on {threads} threads: {calls:?}"
                );
                assert!(
                    calls.iter().all(|&(_, len)| len % unit == 0),
                    "parts of whole units: {calls:?}"
                );
            }
        }
    }

    /// Matching parts: every value of `a` is combined with its own value of `b`, across part boundaries that are not
    /// multiples of the thread count.
    #[test]
    fn zipped_parts_match() {
        for threads in [1, 2, 3] {
            for len in [0, 17, PAR_MIN_VALUES - 1, PAR_MIN_VALUES, 3 * PAR_MIN_VALUES + 5] {
                let mut a: Vec<u64> = (0..len as u64).collect();
                let b: Vec<u64> = (0..len as u64).map(|v| 1000 * v).collect();
                pool(threads).install(|| zip_mut(&mut a, &b, |a, b| a.iter_mut().zip(b).for_each(|(x, y)| *x += y)));
                assert!(
                    a.iter().enumerate().all(|(i, &v)| v == 1001 * i as u64),
                    "{len} on {threads} threads"
                );
            }
        }
    }

    /// Every row is visited once with its index, in a matrix whose rows are not adjacent (a view of a wider one).
    #[test]
    fn rows_are_visited_once_with_their_index() {
        for threads in [1, 2, 3] {
            for (rows, cols) in [(1, 9), (5, 60_000), (64, 4096), (3, 3)] {
                let mut wide = ndarray::Array2::<u32>::zeros((rows, cols + 7));
                let mut m = wide.slice_mut(ndarray::s![.., ..cols]);
                pool(threads).install(|| {
                    rows_mut(&mut m, rows * cols, |r, row| {
                        row.iter_mut().for_each(|v| *v += r as u32 + 1)
                    })
                });
                for (r, row) in wide.rows().into_iter().enumerate() {
                    assert!(
                        row.iter().take(cols).all(|&v| v == r as u32 + 1),
                        "row {r} of {rows}×{cols}"
                    );
                    assert!(row.iter().skip(cols).all(|&v| v == 0), "outside the view, row {r}");
                }
            }
        }
    }

    /// `map` writes every value, at every size around the split threshold.
    #[test]
    fn map_fills_every_value() {
        for threads in [1, 2, 3] {
            for len in [0, 1, 15, PAR_MIN_VALUES - 1, PAR_MIN_VALUES + 17, 5 * PAR_MIN_VALUES] {
                let x: Vec<f32> = (0..len).map(|i| i as f32 - 100.0).collect();
                let y = pool(threads).install(|| map(&x, |v| v.max(0.0) * 2.0));
                assert_eq!(y.len(), len);
                assert!(
                    y.iter().zip(&x).all(|(y, x)| *y == x.max(0.0) * 2.0),
                    "{len} on {threads} threads"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "whole units")]
    fn a_partial_unit_is_refused() {
        units_mut(&mut [0f32; 10], 3, 10, |_, _| {});
    }
}
