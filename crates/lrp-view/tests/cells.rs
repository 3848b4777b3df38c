//! The cell renderer on known maps, in every color mode.

use lrp_view::cells::{Cell, Color, ColorMode, HALF_BLOCK, MapKind, render, to_ansi, to_map};
use lrp_view::colormap::{Rgb, heat, xterm256};
use ndarray::{ArrayD, IxDyn, array};

#[test]
fn a_two_by_two_heatmap_gives_the_expected_cells() {
    // Column 0: +1 over −1; column 1: +0.5 over 0.
    let map = array![[1.0f32, 0.5], [-1.0, 0.0]];
    let kind = MapKind::Heatmap { scale: 1.0 };

    let t = render(map.view(), kind, ColorMode::TrueColor);
    assert_eq!(
        t,
        vec![vec![
            Cell {
                symbol: HALF_BLOCK,
                fg: Color::Rgb(255, 0, 0),
                bg: Color::Rgb(0, 0, 255)
            },
            Cell {
                symbol: HALF_BLOCK,
                fg: Color::Rgb(255, 128, 128),
                bg: Color::Rgb(255, 255, 255)
            },
        ]]
    );

    let p = render(map.view(), kind, ColorMode::Palette256);
    assert_eq!(
        p,
        vec![vec![
            Cell {
                symbol: HALF_BLOCK,
                fg: Color::Indexed(196),
                bg: Color::Indexed(21)
            },
            Cell {
                symbol: HALF_BLOCK,
                fg: Color::Indexed(xterm256(Rgb(255, 128, 128))),
                bg: Color::Indexed(231)
            },
        ]]
    );

    let n = render(map.view(), kind, ColorMode::NoColor);
    let symbols: String = n[0].iter().map(|c| c.symbol).collect();
    // Column 0: |+1| and |−1| tie, the upper pixel wins: strongest positive. Column 1: +0.5 → level 2.
    assert_eq!(symbols, "@*");
    assert!(n[0].iter().all(|c| c.fg == Color::Default && c.bg == Color::Default));
    let negative = render(array![[-0.8f32], [0.1]].view(), kind, ColorMode::NoColor);
    assert_eq!(negative[0][0].symbol, '~');
}

#[test]
fn odd_heights_and_ansi_output() {
    let map = array![[0.0f32], [1.0], [0.5]];
    let rows = render(map.view(), MapKind::Image, ColorMode::TrueColor);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1][0].bg,
        Color::Default,
        "an odd last row pairs with the default background"
    );
    let line = to_ansi(&rows[0]);
    assert_eq!(line, "\x1b[38;2;0;0;0m\x1b[48;2;255;255;255m▀\x1b[0m");
    let plain = to_ansi(&render(map.view(), MapKind::Image, ColorMode::NoColor)[0]);
    assert_eq!(plain, "@");
}

#[test]
fn color_mode_follows_the_environment_conventions() {
    assert_eq!(ColorMode::from_vars(Some("1"), Some("truecolor")), ColorMode::NoColor);
    assert_eq!(ColorMode::from_vars(Some(""), Some("truecolor")), ColorMode::TrueColor);
    assert_eq!(ColorMode::from_vars(None, Some("24bit")), ColorMode::TrueColor);
    assert_eq!(ColorMode::from_vars(None, None), ColorMode::Palette256);
    use lrp_view::cells::{ColorChoice, ColorEnv};
    let truecolor = ColorEnv {
        colorterm: Some("truecolor"),
        ..ColorEnv::default()
    };
    // Output to a file or pipe: no escape codes unless asked for.
    assert_eq!(
        ColorMode::decide(ColorChoice::Auto, false, truecolor),
        ColorMode::NoColor
    );
    assert_eq!(
        ColorMode::decide(ColorChoice::Always, false, truecolor),
        ColorMode::TrueColor
    );
    assert_eq!(
        ColorMode::decide(ColorChoice::Never, true, truecolor),
        ColorMode::NoColor
    );
    assert_eq!(
        ColorMode::decide(ColorChoice::Auto, true, truecolor),
        ColorMode::TrueColor
    );
    let dumb = ColorEnv {
        term: Some("dumb"),
        ..truecolor
    };
    assert_eq!(ColorMode::decide(ColorChoice::Auto, true, dumb), ColorMode::NoColor);
    assert_eq!(ColorMode::decide(ColorChoice::Always, true, dumb), ColorMode::TrueColor);
}

#[test]
fn colormap_and_palette_ends() {
    assert_eq!(heat(0.0), Rgb(255, 255, 255));
    assert_eq!(heat(2.0), Rgb(255, 0, 0));
    assert_eq!(heat(f32::NAN), Rgb(255, 255, 255));
    assert_eq!(xterm256(Rgb(0, 0, 0)), 16);
    assert_eq!(xterm256(Rgb(255, 255, 255)), 231);
    assert_eq!(xterm256(Rgb(128, 128, 128)), 244);
    let m = to_map(
        ArrayD::from_shape_vec(IxDyn(&[2, 1, 2]), vec![1.0, 2.0, 3.0, 4.0])
            .unwrap()
            .view(),
    );
    assert_eq!(m, array![[4.0f32, 6.0]]);
    let flat = to_map(
        ArrayD::from_shape_vec(IxDyn(&[4]), vec![1.0, 2.0, 3.0, 4.0])
            .unwrap()
            .view(),
    );
    assert_eq!(flat.dim(), (2, 2));
}

#[test]
fn a_png_grid_too_large_to_draw_is_refused_before_any_allocation() {
    use lrp_view::png_out::{Panel, PngError, write_png};
    // 4,000 tiles of 200×200 inputs at 1× (about 410×230 px each), 16 columns × 250 rows: some 400 Mpx.
    let panel = || Panel {
        image: ndarray::Array2::zeros((200, 200)),
        picture: None,
        relevance: ndarray::Array2::zeros((200, 200)),
        caption: vec!["x".into()],
    };
    let dir = tempfile::tempdir().unwrap();
    let small: Vec<Panel> = (0..2).map(|_| panel()).collect();
    write_png(&dir.path().join("ok.png"), "t", &small).unwrap();
    let big: Vec<Panel> = (0..4000).map(|_| panel()).collect();
    let err = write_png(&dir.path().join("big.png"), "t", &big).unwrap_err();
    assert!(matches!(err, PngError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("--out"), "{err}");
    assert!(!dir.path().join("big.png").exists());
}

#[test]
fn map_dims_is_the_shape_to_map_gives() {
    use lrp_view::cells::{map_dims, to_map};
    for shape in [
        &[1usize, 28, 28][..],
        &[3, 5, 7],
        &[28, 28],
        &[784],
        &[10],
        &[2, 3, 4, 5],
    ] {
        let a = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(shape));
        assert_eq!(map_dims(shape), to_map(a.view()).dim(), "{shape:?}");
    }
}
