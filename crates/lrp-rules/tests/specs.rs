//! The spec grammar: presets and mappings parse to the right rules; bad specs are refused by name.

use lrp_core::{Arch, Network};
use lrp_rules::{Explainer, PRESETS, Plan, Rule, Spec, Target};
use ndarray::{ArrayD, IxDyn};

fn cnn() -> Network {
    Arch::Cnn.build(&[1, 12, 12], 3, 5).unwrap()
}

fn mlp() -> Network {
    Arch::Mlp.build(&[1, 6, 6], 4, 5).unwrap()
}

fn rules(spec: &str, net: &Network) -> Vec<String> {
    Plan::resolve(&Spec::parse(spec).unwrap(), net)
        .unwrap()
        .rules()
        .iter()
        .map(|(_, r)| r.to_string())
        .collect()
}

fn refused(spec: &str, net: &Network) -> String {
    match Spec::parse(spec).and_then(|s| Plan::resolve(&s, net)) {
        Ok(_) => panic!("'{spec}' should be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn presets_expand_as_documented() {
    let net = cnn(); // conv, conv, dense, dense
    assert_eq!(rules("epsilon", &net), ["epsilon(0.000001)"; 4]);
    assert_eq!(rules("epsilon(0.25)", &net), ["epsilon(0.25)"; 4]);
    assert_eq!(rules("gamma", &net), ["gamma(0.25)"; 4]);
    assert_eq!(rules("alpha1beta0", &net), ["alphabeta(1,0)"; 4]);
    assert_eq!(
        rules("epsilon-plus", &net),
        ["zplus", "zplus", "epsilon(0.000001)", "epsilon(0.000001)"]
    );
    assert_eq!(
        rules("epsilon-plus-flat", &net),
        ["flat", "zplus", "epsilon(0.000001)", "epsilon(0.000001)"]
    );
    assert_eq!(
        rules("epsilon-gamma-box", &net),
        ["zbox(0,1)", "gamma(0.25)", "epsilon(0.000001)", "epsilon(0.000001)"]
    );
    assert_eq!(
        rules("epsilon-alpha2-beta1-flat", &net),
        ["flat", "alphabeta(2,1)", "epsilon(0.000001)", "epsilon(0.000001)"]
    );
    assert_eq!(rules("deep-taylor", &net), ["zbox(0,1)", "zplus", "zplus", "zplus"]);
    // `first` means the first layer with weights whatever its kind (unlike Zennit).
    assert_eq!(
        rules("epsilon-gamma-box", &mlp()),
        ["zbox(0,1)", "epsilon(0.000001)", "epsilon(0.000001)"]
    );
}

#[test]
fn mappings_apply_in_order_and_ignore_whitespace() {
    let net = cnn();
    assert_eq!(
        rules(" all = epsilon ; conv=gamma( 0.5 );#3=zplus; first=wsquare ", &net),
        ["wsquare", "gamma(0.5)", "epsilon(0.000001)", "zplus"]
    );
    assert_eq!(
        rules("#0=flat;dense=alphabeta(1.5,0.5);conv=zbox(-1,1e0)", &net)[0],
        "zbox(-1,1)"
    );
    assert!(Spec::parse("lstm=epsilon;all=epsilon").is_ok());
}

#[test]
fn every_preset_runs_on_both_architectures() {
    for net in [cnn(), mlp()] {
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 1, net.input_shape()[1], net.input_shape()[2]]), |d| {
            ((d[2] * 7 + d[3] * 3) % 10) as f32 / 10.0
        });
        for name in PRESETS {
            let spec = Spec::parse(name).unwrap();
            let e = Explainer::new(&net, &spec)
                .unwrap()
                .explain(x.view(), &Target::Predicted)
                .unwrap();
            assert_eq!(e.relevance.shape(), x.shape(), "{name}");
            assert!(
                e.relevance.iter().all(|v| v.is_finite()),
                "{name}: non-finite relevance"
            );
        }
    }
}

#[test]
fn bad_specs_are_refused_with_messages_that_name_the_problem() {
    let net = cnn();
    let e = refused("epsilonn", &net);
    assert!(
        e.contains("unknown rule or preset 'epsilonn'") && e.contains("epsilon-gamma-box"),
        "{e}"
    );
    let e = refused("all=gama(0.25)", &net);
    assert!(e.contains("unknown rule 'gama'"), "{e}");
    let e = refused("layers=epsilon", &net);
    assert!(e.contains("unknown selector 'layers'"), "{e}");
    let e = refused("epsilon(1e-6x)", &net);
    assert!(e.contains("epsilon: '1e-6x' is not a number"), "{e}");
    let e = refused("all=gamma(nan)", &net);
    assert!(e.contains("not a finite number"), "{e}");
    let e = refused("epsilon(-1)", &net);
    assert!(e.contains("epsilon must be ≥ 0"), "{e}");
    let e = refused("all=alphabeta(2,2)", &net);
    assert!(e.contains("alphabeta(2,2)") && e.contains("alpha − beta = 1"), "{e}");
    let e = refused("conv=epsilon", &net);
    assert!(e.contains("#2 (dense, node n7) gets no rule"), "{e}");
    let e = refused("all=epsilon;#4=zplus", &net);
    assert!(
        e.contains("#4 is out of range") && e.contains("4 layers with weights"),
        "{e}"
    );
    let e = refused("#x=zplus", &net);
    assert!(e.contains("'x' is not a layer index"), "{e}");
    let e = refused("all=epsilon;;first=flat", &net);
    assert!(e.contains("empty assignment"), "{e}");
    let e = refused("all=zbox(1)", &net);
    assert!(e.contains("zbox takes 2 argument(s), got 1"), "{e}");
    let e = refused("all=zbox(1,0)", &net);
    assert!(e.contains("low ≤ high"), "{e}");
    let e = refused("all=zplus(1)", &net);
    assert!(e.contains("zplus takes 0 argument(s)"), "{e}");
    let e = refused("all=epsilon(0.1", &net);
    assert!(e.contains("no closing ')'"), "{e}");
    let e = refused("smoothgrad(0,0.1)", &net);
    assert!(e.contains("n must be at least 1"), "{e}");
    let e = refused("", &net);
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn targets_out_of_range_are_refused() {
    let net = mlp();
    let x = ArrayD::zeros(IxDyn(&[2, 1, 6, 6]));
    let ex = Explainer::new(&net, &Spec::parse("epsilon").unwrap()).unwrap();
    let e = ex.explain(x.view(), &Target::Class(4)).unwrap_err().to_string();
    assert!(e.contains("class 4") && e.contains("4 classes"), "{e}");
    let e = ex
        .explain(x.view(), &Target::PerSample(vec![1]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 targets for 2 samples"), "{e}");
}

#[test]
fn rules_check_their_parameters() {
    assert!(Rule::alpha_beta(2.0, 1.0).is_ok());
    assert!(Rule::alpha_beta(1.0, 1.0).is_err());
    assert!(Rule::epsilon(-0.1).is_err());
    assert!(Rule::gamma(f32::INFINITY).is_err());
}

#[test]
fn explainers_and_plans_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Plan>();
    check::<Explainer<'static>>();
    check::<Spec>();
}

/// `#N` in a rule spec lands on the node every printout names `#N` (`lrp info`, the conservation table, the
/// viewer, `--layer`): on a graph whose layers with weights are not the nodes of the same numbers.
#[test]
fn a_spec_index_lands_on_the_node_printouts_name_so() {
    let net = Arch::Resnet.build(&[1, 28, 28], 10, 3).unwrap();
    let count = net.weighted_layers().len();
    assert!(count >= 5);
    for n in 0..count {
        let spec = Spec::parse(&format!("all=epsilon;#{n}=gamma(0.25)")).unwrap();
        let plan = Plan::resolve(&spec, &net).unwrap();
        let gamma: Vec<usize> = plan
            .rules()
            .iter()
            .filter(|(_, r)| matches!(r, Rule::Gamma(_)))
            .map(|&(k, _)| k)
            .collect();
        assert_eq!(gamma.len(), 1);
        assert_eq!(net.node_name(gamma[0]), format!("#{n}"));
        assert_eq!(net.node_named(&format!("#{n}")), Ok(gamma[0]));
    }
    // Nodes without weights are named by their position, and a bare number names nothing.
    assert_eq!(net.node_name(1), "n1");
    assert!(net.node_named("3").is_err());
}
