//! Long short-term memory (Hochreiter & Schmidhuber 1997), one direction or bidirectional, batch-first.
//!
//! Gate order in the weight matrices is `i, f, g, o` (input, forget, cell input, output), as in PyTorch;
//! `c_t = f ⊙ c_{t−1} + i ⊙ g`, `h_t = o ⊙ tanh(c_t)`, zero initial states.

use ndarray::{Array1, Array2, Array3, Array4, ArrayView2, ArrayView3, Axis, s};
use serde::{Deserialize, Serialize};

use super::op::Op;

/// The weights of one direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LstmDirection {
    /// Input weights `[4H, F]`, gates `i, f, g, o`.
    pub w: Array2<f32>,
    /// Recurrent weights `[4H, H]`.
    pub r: Array2<f32>,
    /// Bias `[4H]` (input and recurrent biases summed).
    pub b: Array1<f32>,
    /// Whether this direction reads the sequence back to front.
    pub reverse: bool,
}

/// An LSTM layer: per sample `[T, F]` → the final hidden state of each direction `[dirs, H]`, or with
/// `return_sequence` every hidden state `[T, dirs, H]` (for stacking).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lstm {
    /// One direction, or two for a bidirectional LSTM (forward first).
    pub directions: Vec<LstmDirection>,
    /// Output every time step's hidden state instead of the final one.
    pub return_sequence: bool,
}

/// Everything one direction computed, in processing order (step `k` reads time `order[k]`).
#[derive(Clone, Debug)]
pub struct LstmStates {
    /// Time index read at each step.
    pub order: Vec<usize>,
    /// Gate activations `i, f, g, o` at each step, each `[N, H]`.
    pub gates: Vec<[Array2<f32>; 4]>,
    /// Pre-activation of the cell input `g` at each step (both biases included), `[N, H]`.
    pub a_g: Vec<Array2<f32>>,
    /// Cell state after each step, `[N, H]`.
    pub c: Vec<Array2<f32>>,
    /// Hidden state after each step, `[N, H]`.
    pub h: Vec<Array2<f32>>,
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl LstmDirection {
    /// Hidden size `H`.
    pub fn hidden(&self) -> usize {
        self.r.ncols()
    }

    /// The rows of gate `k` (0 = i, 1 = f, 2 = g, 3 = o) of a `[4H, ·]` matrix.
    pub fn gate_rows<'a>(&self, m: &'a Array2<f32>, k: usize) -> ArrayView2<'a, f32> {
        let h = self.hidden();
        m.slice(s![k * h..(k + 1) * h, ..])
    }

    /// Runs this direction over `x: [N, T, F]`.
    pub fn run(&self, x: ArrayView3<f32>) -> LstmStates {
        let (n, t, _) = x.dim();
        let h = self.hidden();
        let order: Vec<usize> = if self.reverse {
            (0..t).rev().collect()
        } else {
            (0..t).collect()
        };
        let mut st = LstmStates {
            order: order.clone(),
            gates: Vec::with_capacity(t),
            a_g: Vec::with_capacity(t),
            c: Vec::with_capacity(t),
            h: Vec::with_capacity(t),
        };
        let mut h_prev = Array2::<f32>::zeros((n, h));
        let mut c_prev = Array2::<f32>::zeros((n, h));
        for &ti in &order {
            let xt = x.index_axis(Axis(1), ti);
            let a = xt.dot(&self.w.t()) + h_prev.dot(&self.r.t()) + &self.b;
            let i = a.slice(s![.., 0..h]).mapv(sigmoid);
            let f = a.slice(s![.., h..2 * h]).mapv(sigmoid);
            let a_g = a.slice(s![.., 2 * h..3 * h]).to_owned();
            let g = a_g.mapv(f32::tanh);
            let o = a.slice(s![.., 3 * h..4 * h]).mapv(sigmoid);
            let c = &f * &c_prev + &i * &g;
            let hh = &o * &c.mapv(f32::tanh);
            st.gates.push([i, f, g, o]);
            st.a_g.push(a_g);
            st.c.push(c.clone());
            st.h.push(hh.clone());
            h_prev = hh;
            c_prev = c;
        }
        st
    }
}

/// Gradients of one direction: `[dW, dR, db]` and the input gradient `[N, T, F]`.
struct DirectionGrads {
    dw: Array2<f32>,
    dr: Array2<f32>,
    db: Array1<f32>,
    dx: Array3<f32>,
}

impl Lstm {
    /// Hidden size (of every direction).
    pub fn hidden(&self) -> usize {
        self.directions.first().map_or(0, LstmDirection::hidden)
    }

    /// Input features `F`.
    pub fn features(&self) -> usize {
        self.directions.first().map_or(0, |d| d.w.ncols())
    }

    /// Checks the directions agree with each other and with the input features; returns the output shape.
    fn shape_for(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let &[t, f] = input else {
            return Err(format!("needs input [time, features], got {input:?}"));
        };
        if self.directions.is_empty() || self.directions.len() > 2 {
            return Err(format!(
                "has {} directions; 1 or 2 are supported",
                self.directions.len()
            ));
        }
        if self.directions.len() == 2 && (self.directions[0].reverse || !self.directions[1].reverse) {
            return Err("a bidirectional LSTM has a forward then a reverse direction".into());
        }
        let rows = self.directions[0].w.nrows();
        if rows == 0 || !rows.is_multiple_of(4) {
            return Err(format!(
                "input weights have {rows} rows; expected 4 × hidden size (gates i, f, g, o)"
            ));
        }
        let h = rows / 4;
        for (k, d) in self.directions.iter().enumerate() {
            if d.w.dim() != (4 * h, f) {
                return Err(format!(
                    "direction {k}: input weights are {:?}, expected [{}, {f}]",
                    d.w.shape(),
                    4 * h
                ));
            }
            if d.r.dim() != (4 * h, h) {
                return Err(format!(
                    "direction {k}: recurrent weights are {:?}, expected [{}, {h}]",
                    d.r.shape(),
                    4 * h
                ));
            }
            if d.b.len() != 4 * h {
                return Err(format!(
                    "direction {k}: bias has {} entries, expected {}",
                    d.b.len(),
                    4 * h
                ));
            }
            for (name, v) in [("input weights", d.w.iter()), ("recurrent weights", d.r.iter())] {
                if let Some(i) = v.enumerate().find(|(_, x)| !x.is_finite()).map(|(i, _)| i) {
                    return Err(format!(
                        "direction {k}: {name} have a non-finite value at flat index {i}"
                    ));
                }
            }
            if d.b.iter().any(|x| !x.is_finite()) {
                return Err(format!("direction {k}: bias has a non-finite value"));
            }
        }
        let dirs = self.directions.len();
        Ok(if self.return_sequence {
            vec![t, dirs, h]
        } else {
            vec![dirs, h]
        })
    }

    /// The states of every direction for `x: [N, T, F]`.
    pub fn states(&self, x: ArrayView3<f32>) -> Vec<LstmStates> {
        self.directions.iter().map(|d| d.run(x)).collect()
    }

    /// The layer output from the states: `[N, dirs, H]`, or `[N, T, dirs, H]` with `return_sequence`.
    pub fn output_from(&self, states: &[LstmStates], t: usize) -> ndarray::ArrayD<f32> {
        let n = states[0].h.first().map_or(0, |h| h.nrows());
        let h = self.hidden();
        if self.return_sequence {
            let mut out = Array4::<f32>::zeros((n, t, states.len(), h));
            for (d, st) in states.iter().enumerate() {
                for (k, &ti) in st.order.iter().enumerate() {
                    out.slice_mut(s![.., ti, d, ..]).assign(&st.h[k]);
                }
            }
            out.into_dyn()
        } else {
            let mut out = Array3::<f32>::zeros((n, states.len(), h));
            for (d, st) in states.iter().enumerate() {
                if let Some(last) = st.h.last() {
                    out.slice_mut(s![.., d, ..]).assign(last);
                }
            }
            out.into_dyn()
        }
    }

    /// Forward pass: `x: [N, T, F]`.
    pub fn forward(&self, x: ArrayView3<f32>) -> ndarray::ArrayD<f32> {
        let states = self.states(x);
        self.output_from(&states, x.dim().1)
    }

    /// The output gradient of direction `d` at time `ti`, `[N, H]`, if any.
    fn grad_at(&self, g: &ndarray::ArrayD<f32>, d: usize, ti: usize, last: bool) -> Option<Array2<f32>> {
        if self.return_sequence {
            Some(g.slice(s![.., ti, d, ..]).to_owned())
        } else if last {
            Some(g.slice(s![.., d, ..]).to_owned())
        } else {
            None
        }
    }

    /// Backpropagation through time: the input gradient `[N, T, F]` and the parameter gradients
    /// `[dW, dR, db]` of each direction, for output gradient `g` (shaped like the output).
    pub fn backward(&self, x: ArrayView3<f32>, g: &ndarray::ArrayD<f32>) -> (Array3<f32>, Vec<ndarray::ArrayD<f32>>) {
        let states = self.states(x);
        let mut dx = Array3::<f32>::zeros(x.raw_dim());
        let mut params = Vec::with_capacity(3 * self.directions.len());
        for (d, (dir, st)) in self.directions.iter().zip(&states).enumerate() {
            let gr = self.backward_direction(d, dir, st, x, g);
            dx += &gr.dx;
            params.extend([gr.dw.into_dyn(), gr.dr.into_dyn(), gr.db.into_dyn()]);
        }
        (dx, params)
    }

    fn backward_direction(
        &self,
        d: usize,
        dir: &LstmDirection,
        st: &LstmStates,
        x: ArrayView3<f32>,
        g: &ndarray::ArrayD<f32>,
    ) -> DirectionGrads {
        let (n, _, _) = x.dim();
        let h = dir.hidden();
        let steps = st.order.len();
        let mut out = DirectionGrads {
            dw: Array2::zeros(dir.w.raw_dim()),
            dr: Array2::zeros(dir.r.raw_dim()),
            db: Array1::zeros(dir.b.raw_dim()),
            dx: Array3::zeros(x.raw_dim()),
        };
        let mut dh_carry = Array2::<f32>::zeros((n, h));
        let mut dc_carry = Array2::<f32>::zeros((n, h));
        let zeros = Array2::<f32>::zeros((n, h));
        let mut da = Array2::<f32>::zeros((n, 4 * h));
        for k in (0..steps).rev() {
            let ti = st.order[k];
            let mut dh = dh_carry.clone();
            if let Some(go) = self.grad_at(g, d, ti, k == steps - 1) {
                dh += &go;
            }
            let [i, f, gg, o] = &st.gates[k];
            let c = &st.c[k];
            let c_prev = if k > 0 { &st.c[k - 1] } else { &zeros };
            let h_prev = if k > 0 { &st.h[k - 1] } else { &zeros };
            let tc = c.mapv(f32::tanh);
            let d_o = &dh * &tc;
            let dc = &dc_carry + &(&dh * o * &tc.mapv(|v| 1.0 - v * v));
            let di = &dc * gg;
            let dg = &dc * i;
            let df = &dc * c_prev;
            dc_carry = &dc * f;
            da.slice_mut(s![.., 0..h]).assign(&(&di * &i.mapv(|v| v * (1.0 - v))));
            da.slice_mut(s![.., h..2 * h])
                .assign(&(&df * &f.mapv(|v| v * (1.0 - v))));
            da.slice_mut(s![.., 2 * h..3 * h])
                .assign(&(&dg * &gg.mapv(|v| 1.0 - v * v)));
            da.slice_mut(s![.., 3 * h..4 * h])
                .assign(&(&d_o * &o.mapv(|v| v * (1.0 - v))));
            let xt = x.index_axis(Axis(1), ti);
            out.dw += &da.t().dot(&xt);
            out.dr += &da.t().dot(h_prev);
            out.db += &da.sum_axis(Axis(0));
            out.dx.index_axis_mut(Axis(1), ti).assign(&da.dot(&dir.w));
            dh_carry = da.dot(&dir.r);
        }
        out
    }
}

impl Op for Lstm {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.shape_for(inputs[0])
    }

    fn forward(&self, xs: &[ndarray::ArrayViewD<f32>], _: &[usize]) -> ndarray::ArrayD<f32> {
        self.forward(
            xs[0]
                .view()
                .into_dimensionality::<ndarray::Ix3>()
                .expect("shape checked at construction"),
        )
    }

    fn backward(&self, xs: &[ndarray::ArrayViewD<f32>], g: ndarray::ArrayViewD<f32>) -> Vec<ndarray::ArrayD<f32>> {
        let x = xs[0]
            .view()
            .into_dimensionality::<ndarray::Ix3>()
            .expect("shape checked at construction");
        vec![self.backward(x, &g.to_owned()).0.into_dyn()]
    }
}
