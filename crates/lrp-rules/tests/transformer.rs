//! Transformers: the vision-transformer fixtures (AttnLRP and gradient × input from LXT, both PyTorch exports, all
//! 32 inputs in one call), and a hand-built attention block whose scores and value products are near zero, where
//! the gradient form in float32 must equal a float64 reference and a relevance form with a stabilizer would not.

mod common;

use common::{fixture, worst_relative_error};

use lrp_core::{Dense, Layer, Network};
use lrp_rules::{Explainer, Spec, Target};
use ndarray::{Array1, Array2, ArrayD, Axis};

#[test]
fn vit_fixtures_match_lxt_for_both_exports_and_both_cases() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("vit/manifest.json")).unwrap()).unwrap();
    let model = &manifest["models"][0];
    let s = |k: &str| format!("vit/{}", model[k].as_str().unwrap());
    let inputs: ArrayD<f32> = ndarray_npy::read_npy(fixture(&s("inputs"))).unwrap();
    let targets: Array1<i64> = ndarray_npy::read_npy(fixture(&s("targets"))).unwrap();
    let targets = Target::PerSample(targets.iter().map(|&t| t as usize).collect());
    let logits_ref: ArrayD<f32> = ndarray_npy::read_npy(fixture(&s("logits"))).unwrap();
    let mut report = Vec::new();
    let mut checked = 0;
    for export in ["model", "model_dynamo_export"] {
        let net = lrp_onnx::import_file(&fixture(&s(export))).unwrap().network;
        assert!(!net.is_chain());
        for case in model["cases"].as_array().unwrap() {
            let spec = Spec::parse(case["spec"].as_str().unwrap()).unwrap();
            let reference: ArrayD<f32> =
                ndarray_npy::read_npy(fixture(&format!("vit/{}", case["file"].as_str().unwrap()))).unwrap();
            let e = Explainer::new(&net, &spec)
                .unwrap()
                .explain(inputs.view(), &targets)
                .unwrap();
            assert_eq!(e.relevance.shape(), [32, 1, 28, 28]);
            // Logits to 1e-4 of the largest.
            let scale = lrp_testkit::max_abs(logits_ref.iter());
            let logit_err = lrp_testkit::max_abs((&e.logits - &logits_ref).iter());
            assert!(logit_err <= 1e-4 * scale, "{export}: logit error {logit_err}");
            let err = worst_relative_error(&e.relevance, &reference);
            report.push(format!("{export} {spec}: {err:.2e}"));
            // Measured 2.2e-6 at worst (the README's figure); about 3 times that.
            assert!(err <= 7e-6, "{export} {spec}: {err:.3e}\n{}", report.join("\n"));
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
    println!("{}", report.join("\n"));
}

/// Deterministic values in [−1, 1).
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn mat(seed: u64, r: usize, c: usize, scale: f64) -> Array2<f64> {
    Array2::from_shape_vec((r, c), values(seed, r * c)).unwrap() * scale
}

struct Block {
    wq: Array2<f64>,
    wk: Array2<f64>,
    wv: Array2<f64>,
    bv: Array1<f64>,
    wh: Array2<f64>,
    bh: Array1<f64>,
}

const T: usize = 4;
const D: usize = 3;
const H: usize = 2;

/// One attention head on `[T, D]` tokens and a linear head on its flattened output, with queries so small that the
/// scores are ~1e-6 and values so small that the products `A·V` are ~1e-5.
fn block() -> Block {
    Block {
        wq: mat(1, H, D, 2e-6),
        wk: mat(2, H, D, 1.0),
        wv: mat(3, H, D, 1e-5),
        bv: Array1::from(values(4, H)) * 1e-5,
        wh: mat(5, 3, T * H, 1e4),
        bh: Array1::from(values(6, 3)) * 0.1,
    }
}

fn network(b: &Block) -> Network {
    let dense = |w: &Array2<f64>, bias: Option<&Array1<f64>>| {
        Layer::Dense(Dense::new(w.mapv(|v| v as f32), bias.map(|b| b.mapv(|v| v as f32))))
    };
    Network::graph(
        vec![T, D],
        vec![
            (dense(&b.wq, None), vec![0]),                 // q: value 1
            (dense(&b.wk, None), vec![0]),                 // k: value 2
            (dense(&b.wv, Some(&b.bv)), vec![0]),          // v: value 3
            (Layer::transpose(vec![1, 0]), vec![2]),       // kᵀ: value 4
            (Layer::MatMul(lrp_core::MatMul), vec![1, 4]), // scores: value 5
            (Layer::softmax(1), vec![5]),                  // A: value 6
            (Layer::MatMul(lrp_core::MatMul), vec![6, 3]), // A·V: value 7
            (Layer::Flatten(lrp_core::Flatten), vec![7]),  // value 8
            (dense(&b.wh, Some(&b.bh)), vec![8]),          // logits
        ],
    )
    .unwrap()
}

fn softmax_rows(s: &Array2<f64>) -> Array2<f64> {
    let mut a = s.clone();
    for mut row in a.outer_iter_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, &v| a.max(v));
        row.mapv_inplace(|v| (v - m).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    a
}

/// The block's AttnLRP relevance in float64: in the gradient form when `stab` is `None`, else in the relevance
/// form (relevance divided by each pre-activation, stabilized by `stab`), the form the gradient form replaces.
fn reference(b: &Block, x: &Array2<f64>, target: usize, stab: Option<f64>) -> Array2<f64> {
    let q = x.dot(&b.wq.t());
    let k = x.dot(&b.wk.t());
    let v = x.dot(&b.wv.t()) + &b.bv;
    let s = q.dot(&k.t());
    let a = softmax_rows(&s);
    let o = a.dot(&v);
    let flat = o.clone().into_shape_with_order(T * H).unwrap();
    let logits = b.wh.dot(&flat) + &b.bh;
    let div = |r: &Array2<f64>, z: &Array2<f64>, e: f64| {
        ndarray::Zip::from(r)
            .and(z)
            .map_collect(|&r, &z| r / (z + if z >= 0.0 { e } else { -e }))
    };
    match stab {
        None => {
            let mut g_logits = Array1::<f64>::zeros(3);
            g_logits[target] = 1.0;
            let g_o = b.wh.t().dot(&g_logits).into_shape_with_order((T, H)).unwrap();
            let g_a = g_o.dot(&v.t()) * 0.5;
            let g_v = a.t().dot(&g_o) * 0.5;
            let dot = (&a * &g_a).sum_axis(Axis(1)).insert_axis(Axis(1));
            let g_s = &a * &(&g_a - &dot);
            let g_q = g_s.dot(&k) * 0.5;
            let g_k = g_s.t().dot(&q) * 0.5;
            let g_x = g_q.dot(&b.wq) + g_k.dot(&b.wk) + g_v.dot(&b.wv);
            x * &g_x
        }
        Some(e) => {
            let r_logit = logits[target];
            let z_h = logits.clone();
            let mut s_h = Array1::<f64>::zeros(3);
            s_h[target] = r_logit / (z_h[target] + if z_h[target] >= 0.0 { e } else { -e });
            let r_o = (&flat * &b.wh.t().dot(&s_h)).into_shape_with_order((T, H)).unwrap();
            let so = div(&r_o, &o, e);
            let r_a = &a * &so.dot(&v.t()) * 0.5;
            let r_v = &v * &a.t().dot(&so) * 0.5;
            let sum = r_a.sum_axis(Axis(1)).insert_axis(Axis(1));
            let r_s = &s * &(&r_a - &(&a * &sum));
            let ss = div(&r_s, &s, e);
            let r_q = &q * &ss.dot(&k) * 0.5;
            let r_k = &k * &ss.t().dot(&q) * 0.5;
            let back = |r: &Array2<f64>, z: &Array2<f64>, w: &Array2<f64>| x * &div(r, z, e).dot(w);
            back(&r_q, &q, &b.wq) + back(&r_k, &k, &b.wk) + back(&r_v, &v, &b.wv)
        }
    }
}

/// The first sample of a block's relevance `[N, T, D]`, in float64.
fn first_sample(r: &ArrayD<f32>) -> Array2<f64> {
    r.index_axis(Axis(0), 0)
        .mapv(|v| v as f64)
        .into_shape_with_order((T, D))
        .unwrap()
}

fn worst(got: &Array2<f64>, reference: &Array2<f64>) -> f64 {
    let scale = lrp_testkit::max_abs64(reference.iter());
    lrp_testkit::max_abs64((got - reference).iter()) / scale
}

#[test]
fn near_zero_attention_in_float32_equals_the_float64_gradient_form() {
    let b = block();
    let net = network(&b);
    let explainer = Explainer::new(&net, &Spec::parse("attnlrp").unwrap()).unwrap();
    for sample in 0..4u64 {
        let x = mat(10 + sample, T, D, 1.0);
        let x32 = x.mapv(|v| v as f32).into_dyn().insert_axis(Axis(0));
        let e = explainer.explain(x32.view(), &Target::Predicted).unwrap();
        // Without layer sums (the batch runner's explainer) the gradient form skips its per-value products:
        // the same relevance bits.
        let lean = Explainer::new(&net, &Spec::parse("attnlrp").unwrap())
            .unwrap()
            .without_layer_sums()
            .explain(x32.view(), &Target::Predicted)
            .unwrap();
        assert!(lean.layer_sums.is_empty() && !e.layer_sums.is_empty());
        let bits = |r: &ndarray::ArrayD<f32>| r.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&lean.relevance), bits(&e.relevance));
        let target = e.targets[0];
        let got = first_sample(&e.relevance);
        // The scores and the products really are near zero.
        let trace = net.forward_trace(x32.view()).unwrap();
        let max = |v: usize| lrp_testkit::max_abs(trace.value(v).iter());
        assert!(max(5) < 1e-5 && max(7) < 1e-4, "scores {} products {}", max(5), max(7));
        let exact = reference(&b, &x, target, None);
        let err = worst(&got, &exact);
        // Measured 4.2e-7 at worst; about 3 times that.
        assert!(
            err <= 1.3e-6,
            "sample {sample}: float32 gradient form off by {err:.2e} of max|R|"
        );
        // What the test guards against: the relevance form with a 1e-6 stabilizer, even in float64.
        let relevance_form = reference(&b, &x, target, Some(1e-6));
        let off = worst(&relevance_form, &exact);
        assert!(off > 1e-2, "sample {sample}: the relevance form is only {off:.2e} off");
        println!("sample {sample}: gradient form {err:.1e}, relevance form with 1e-6 {off:.1e}");
    }
}

#[test]
fn transformer_nodes_have_their_true_gradients() {
    // gradient-x-input through the block against the float64 chain rule (the full softmax Jacobian, both factors
    // of each product whole).
    let b = block();
    let net = network(&b);
    let x = mat(20, T, D, 1.0);
    let x32 = x.mapv(|v| v as f32).into_dyn().insert_axis(Axis(0));
    let e = Explainer::new(&net, &Spec::parse("gradient").unwrap())
        .unwrap()
        .explain(x32.view(), &Target::Class(1))
        .unwrap();
    // Central differences of the logit in float64.
    let logit = |x: &Array2<f64>| {
        let q = x.dot(&b.wq.t());
        let k = x.dot(&b.wk.t());
        let v = x.dot(&b.wv.t()) + &b.bv;
        let o = softmax_rows(&q.dot(&k.t())).dot(&v);
        b.wh.row(1).dot(&o.into_shape_with_order(T * H).unwrap()) + b.bh[1]
    };
    let mut numeric = Array2::<f64>::zeros((T, D));
    for i in 0..T {
        for j in 0..D {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[[i, j]] += 1e-4;
            m[[i, j]] -= 1e-4;
            numeric[[i, j]] = (logit(&p) - logit(&m)) / 2e-4;
        }
    }
    let err = worst(&first_sample(&e.relevance), &numeric);
    assert!(err < 1e-3, "gradient off by {err:.2e}");
}

#[test]
fn epsilon_zero_is_legal_everywhere_and_is_gradient_times_input_on_a_relu_network() {
    // LRP-0 on ReLU layers, max pooling and biases is gradient × input (Ancona et al. 2018); with ε = 0 an output
    // of exactly 0 passes nothing instead of dividing 0 by 0.
    let net = lrp_onnx::import_file(&fixture("mnist-cnn.onnx")).unwrap().network;
    let inputs: ArrayD<f32> = ndarray_npy::read_npy(fixture("inputs.npy")).unwrap();
    let lrp0 = Explainer::new(&net, &Spec::parse("epsilon(0)").unwrap())
        .unwrap()
        .explain(inputs.view(), &Target::Predicted)
        .unwrap();
    let gxi = Explainer::new(&net, &Spec::parse("gradient-x-input").unwrap())
        .unwrap()
        .explain(inputs.view(), &Target::Predicted)
        .unwrap();
    assert!(lrp0.relevance.iter().all(|v| v.is_finite()));
    let err = worst_relative_error(&lrp0.relevance, &gxi.relevance);
    assert!(err <= 1e-4, "LRP-0 vs gradient × input: {err:.2e}");
}

#[test]
fn every_rule_gives_the_same_relevance_in_the_gradient_form() {
    // Each rule written as a modified gradient (R = x ⊙ ĝ; z^B, w² and flat giving relevance at the input) equals
    // the relevance form on the oracle networks, for every LRP case of the manifest and the presets.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for model in manifest["models"].as_array().unwrap() {
        let net = lrp_onnx::import_file(&fixture(model["model"].as_str().unwrap()))
            .unwrap()
            .network;
        let inputs: ArrayD<f32> = ndarray_npy::read_npy(fixture(model["inputs"].as_str().unwrap())).unwrap();
        let mut specs: Vec<String> = model["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["spec"].as_str().unwrap().to_string())
            .collect();
        specs.extend(["alpha2beta1", "deep-taylor", "epsilon-plus-flat", "epsilon-gamma-box"].map(String::from));
        for spec in specs {
            let spec = Spec::parse(&spec).unwrap();
            if !matches!(spec.method(), lrp_rules::Method::Lrp(_)) {
                continue;
            }
            let run = |form| {
                Explainer::new_in(&net, &spec, form)
                    .unwrap()
                    .explain(inputs.view(), &Target::Predicted)
                    .unwrap()
            };
            let (r, g) = (run(lrp_rules::Form::Relevance), run(lrp_rules::Form::Gradient));
            let err = worst_relative_error(&g.relevance, &r.relevance);
            assert!(err <= 1e-5, "{} {spec}: gradient form off by {err:.2e}", model["model"]);
            // The conservation sums agree too.
            for (a, b) in r.layer_sums.iter().zip(&g.layer_sums) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= 1e-3 * (1.0 + x.abs()), "{spec}: sums {x} vs {y}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} cases");
}

#[test]
fn graph_references_hold_in_the_gradient_form() {
    // Residual joins, concatenations, average pooling, constant biases and smooth activations (the identity rule
    // as `ĝ · f(x)/x`) in the gradient form, against Zennit's float64 references.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("graph/manifest.json")).unwrap()).unwrap();
    let mut report = Vec::new();
    for model in manifest["models"].as_array().unwrap() {
        let s = |k: &str| format!("graph/{}", model[k].as_str().unwrap());
        let net = lrp_onnx::import_file(&fixture(&s("model"))).unwrap().network;
        let inputs: ArrayD<f32> = ndarray_npy::read_npy(fixture(&s("inputs"))).unwrap();
        let targets: Array1<i64> = ndarray_npy::read_npy(fixture(&s("targets"))).unwrap();
        let targets = Target::PerSample(targets.iter().map(|&t| t as usize).collect());
        for case in model["cases"].as_array().unwrap() {
            let spec = Spec::parse(case["spec"].as_str().unwrap()).unwrap();
            if !matches!(spec.method(), lrp_rules::Method::Lrp(_)) {
                continue;
            }
            let reference: ArrayD<f32> =
                ndarray_npy::read_npy(fixture(&format!("graph/{}", case["file"].as_str().unwrap()))).unwrap();
            let got = Explainer::new_in(&net, &spec, lrp_rules::Form::Gradient)
                .unwrap()
                .explain(inputs.view(), &targets)
                .unwrap()
                .relevance;
            let err = worst_relative_error(&got, &reference);
            report.push(format!("{} {spec}: {err:.1e}", s("model")));
            assert!(err <= 1e-4, "{}", report.join("\n"));
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn every_preset_explains_the_vision_transformer() {
    // The linear layers follow each preset; the transformer nodes keep their own rules.
    let net = lrp_onnx::import_file(&fixture("vit/mnist-vit-legacy.onnx"))
        .unwrap()
        .network;
    let inputs: ArrayD<f32> = ndarray_npy::read_npy(fixture("vit/inputs.npy")).unwrap();
    let x = inputs.slice_axis(Axis(0), (0..4).into()).to_owned();
    let logits = net.forward(x.view()).unwrap();
    let targets = lrp_core::train::argmax_rows(logits.view());
    let logit = |x: &ArrayD<f32>, n: usize| net.forward(x.view()).unwrap()[[0, targets[n]]] as f64;
    // Each LRP preset: its name, the rules it gives the layers, its heatmap.
    type Seen = (String, Vec<(usize, lrp_rules::Rule)>, ArrayD<f32>);
    let mut seen: Vec<Seen> = Vec::new();
    for &preset in lrp_rules::PRESETS {
        let spec = Spec::parse(preset).unwrap();
        let ex = Explainer::new(&net, &spec).unwrap_or_else(|err| panic!("{preset}: {err}"));
        let e = ex
            .explain(x.view(), &Target::Predicted)
            .unwrap_or_else(|err| panic!("{preset}: {err}"));
        assert!(e.relevance.iter().all(|v| v.is_finite()), "{preset}");
        // Each preset gives its own heatmap (the linear layers' rules differ), none all zero.
        assert!(e.relevance.iter().any(|&v| v != 0.0), "{preset}: all zero");
        // The linear layers follow each preset: two presets that give this network's layers the same rules give
        // the same bits (on the ViT the only convolution is also the first layer, so e.g. epsilon-plus-flat and
        // epsilon-alpha2-beta1-flat agree), two that give any layer another rule give another heatmap.
        if matches!(spec.method(), lrp_rules::Method::Lrp(_)) {
            let rules = ex.plan().rules();
            for (other, other_rules, r) in &seen {
                let same_rules = rules
                    .iter()
                    .map(|(k, r)| (k, r.to_string()))
                    .eq(other_rules.iter().map(|(k, r)| (k, r.to_string())));
                let z_plus_synonym = [preset, other.as_str()]
                    .iter()
                    .all(|p| ["zplus", "alpha1beta0"].contains(p));
                assert_eq!(same_rules || z_plus_synonym, *r == e.relevance, "{preset} vs {other}");
            }
            seen.push((preset.to_string(), rules, e.relevance.clone()));
        }
        let sample = |n: usize| x.slice_axis(Axis(0), (n..n + 1).into()).to_owned();
        match preset {
            // The gradient, against central differences of the logit at a few pixels (float64 sums of float32
            // forward passes, step 1e-2).
            "gradient" => {
                for (n, pixel) in [(0, [0, 0, 13, 14]), (1, [0, 0, 20, 9]), (3, [0, 0, 5, 17])] {
                    let (mut up, mut down) = (sample(n), sample(n));
                    let at = [0, pixel[1], pixel[2], pixel[3]];
                    up[at] += 1e-2;
                    down[at] -= 1e-2;
                    let numeric = (logit(&up, n) - logit(&down, n)) / 2e-2;
                    let analytic = e.relevance[[n, pixel[1], pixel[2], pixel[3]]] as f64;
                    assert!(
                        (numeric - analytic).abs() <= 2e-2 * (1.0 + analytic.abs()),
                        "{n}: {numeric} vs {analytic}"
                    );
                }
            }
            // Integrated gradients' completeness: the attributions add up to logit(x) − logit(0), up to the
            // Riemann sum's error (32 midpoints).
            "integrated-gradients" => {
                for n in 0..4 {
                    let total: f64 = e.relevance.index_axis(Axis(0), n).iter().map(|&v| v as f64).sum();
                    let delta = logit(&sample(n), n) - logit(&sample(n).mapv(|_| 0.0), n);
                    assert!(
                        (total - delta).abs() <= 0.05 * delta.abs(),
                        "{n}: Σ IG {total} vs Δ logit {delta}"
                    );
                }
            }
            _ => {}
        }
    }
    // The relevance form is refused by name on a transformer.
    let err = Explainer::new_in(&net, &Spec::parse("epsilon").unwrap(), lrp_rules::Form::Relevance)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layernorm") && err.contains("gradient form"), "{err}");
}
