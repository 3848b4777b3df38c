//! The LSTM rule of Arras et al. (2017), relevance form (an LSTM is refused in the gradient form).

use lrp_core::simd::stabilised as stab;
use ndarray::{ArrayD, Zip};

/// LSTM relevance (Arras et al. 2017, "Explaining Recurrent Neural Network Predictions in Sentiment Analysis"):
/// `R(h_t)` goes to `c_t`; `c_t = f⊙c_{t−1} + i⊙g` is split by the ε-rule with `c_t` as denominator;
/// signal-take-all gives `R(i⊙g)` to `g`; `g`'s pre-activation is split by the ε-rule over `x_t` and `h_{t−1}`
/// (biases absorb their share). Directions add.
///
/// # Shapes
/// `x: [N, T, F]`, `r` shaped like the layer output → `[N, T, F]`.
pub(crate) fn relevance(lstm: &lrp_core::Lstm, e: f32, x: &ArrayD<f32>, r: &ArrayD<f32>) -> ArrayD<f32> {
    use ndarray::{Array2, Array3, Axis};
    let x3 = x
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .expect("LSTM input is [N, T, F]");
    let (n, _, _) = x3.dim();
    let states = lstm.states(x3);
    let mut rx = Array3::<f32>::zeros(x3.raw_dim());
    let stab_div = |num: &Array2<f32>, den: &Array2<f32>| {
        let mut out = num.clone();
        Zip::from(&mut out).and(den).for_each(|o, &d| *o /= stab(d, e));
        out
    };
    for (d, (dir, st)) in lstm.directions.iter().zip(&states).enumerate() {
        let h = dir.hidden();
        let zeros = Array2::<f32>::zeros((n, h));
        let wg = dir.gate_rows(&dir.w, 2);
        let ug = dir.gate_rows(&dir.r, 2);
        let steps = st.order.len();
        let mut rh_carry = zeros.clone();
        let mut rc_carry = zeros.clone();
        for k in (0..steps).rev() {
            let ti = st.order[k];
            let mut rh = rh_carry;
            if lstm.return_sequence {
                rh += &r.index_axis(Axis(1), ti).index_axis(Axis(1), d);
            } else if k == steps - 1 {
                rh += &r.index_axis(Axis(1), d);
            }
            let rc = &rc_carry + &rh;
            let [i, f, g, _] = &st.gates[k];
            let c = &st.c[k];
            let (c_prev, h_prev) = if k > 0 {
                (&st.c[k - 1], &st.h[k - 1])
            } else {
                (&zeros, &zeros)
            };
            let share = stab_div(&rc, c);
            rc_carry = &share * f * c_prev;
            let rg = &share * i * g;
            let sg = stab_div(&rg, &st.a_g[k]);
            let xt = x3.index_axis(Axis(1), ti);
            let mut rxt = rx.index_axis_mut(Axis(1), ti);
            rxt += &(&sg.dot(&wg) * &xt);
            rh_carry = sg.dot(&ug) * h_prev;
        }
    }
    rx.into_dyn()
}
