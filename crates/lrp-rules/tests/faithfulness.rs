//! Region perturbation on hand-made cases.

use lrp_core::{Dense, Layer, Network};
use lrp_rules::faithfulness::{Regions, aopc, perturbation_curve};
use ndarray::{Array2, ArrayD, IxDyn};

#[test]
fn regions_are_ordered_by_relevance_and_removed_in_that_order() {
    let regions = Regions::new(&[1, 4, 4], 2).unwrap();
    assert_eq!(regions.count(), 4);
    let mut r = ArrayD::<f32>::zeros(IxDyn(&[1, 4, 4]));
    r[[0, 3, 3]] = 5.0; // region 3 (bottom right)
    r[[0, 0, 2]] = 2.0; // region 1 (top right)
    r[[0, 1, 0]] = -1.0; // region 0 (top left)
    assert_eq!(regions.most_relevant_first(r.view()), vec![3, 1, 2, 0]);
    // A "network" that sums the input: the curve drops by each region's sum.
    let net = Network::new(
        vec![1, 4, 4],
        vec![
            Layer::Flatten(lrp_core::Flatten),
            Layer::Dense(Dense::new(Array2::ones((1, 16)), None)),
        ],
    )
    .unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[1, 4, 4]), |d| (d[1] * 4 + d[2]) as f32);
    let curve = perturbation_curve(&net, x.view(), 0, &regions, &[3, 1, 2, 0], 4, 0.0).unwrap();
    // Region sums: 0: 0+1+4+5 = 10, 1: 2+3+6+7 = 18, 2: 8+9+12+13 = 42, 3: 10+11+14+15 = 50; total 120.
    assert_eq!(curve, vec![120.0, 70.0, 52.0, 10.0, 0.0]);
    assert_eq!(aopc(&curve), (0.0 + 50.0 + 68.0 + 110.0 + 120.0) / 5.0);
    let random = regions.random(7);
    let mut sorted = random.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 1, 2, 3]);
    assert_eq!(random, regions.random(7));
    assert!(Regions::new(&[16], 2).is_err());
}
