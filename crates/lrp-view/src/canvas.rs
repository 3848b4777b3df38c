//! Draw mode's canvas: soft strokes painted with the mouse or the keyboard, undo, and MNIST's own preprocessing
//! (crop to the ink, scale into 20×20 keeping the aspect ratio, centre by centre of mass in 28×28), so a drawn
//! digit reaches the network looking like the digits it was trained on.

use ndarray::Array2;

/// Side of the canvas and of the network input.
pub const SIDE: usize = 28;
/// Side of the box MNIST scales digits into.
pub const BOX: usize = 20;
/// Ink at distances up to this from the brush centre is full; it fades to nothing at [`BRUSH_EDGE`].
pub const BRUSH_CORE: f32 = 1.0;
/// Where the brush's soft edge ends (pixels from its centre).
pub const BRUSH_EDGE: f32 = 2.1;

/// The drawing and its history.
#[derive(Clone, Debug)]
pub struct Canvas {
    /// Ink in `[0, 1]`, `SIDE × SIDE`.
    pub ink: Array2<f32>,
    /// The keyboard cursor `(row, column)`.
    pub cursor: (usize, usize),
    /// Increases with every change (explanations are cached per version).
    pub version: u64,
    undo: Vec<Array2<f32>>,
    last: Option<(f32, f32)>,
    stroking: bool,
}

impl Default for Canvas {
    fn default() -> Canvas {
        Canvas {
            ink: Array2::zeros((SIDE, SIDE)),
            cursor: (SIDE / 2, SIDE / 2),
            version: 0,
            undo: Vec::new(),
            last: None,
            stroking: false,
        }
    }
}

fn brush(d: f32) -> f32 {
    ((BRUSH_EDGE - d) / (BRUSH_EDGE - BRUSH_CORE)).clamp(0.0, 1.0)
}

impl Canvas {
    /// Whether nothing is drawn.
    pub fn is_empty(&self) -> bool {
        self.ink.iter().all(|&v| v <= 0.0)
    }

    /// Whether a mouse stroke is under way.
    pub fn stroking(&self) -> bool {
        self.stroking
    }

    fn dab(&mut self, y: f32, x: f32, erase: bool) {
        // The eraser reaches 1.5 pixels further than the brush, so it removes a dab's soft edge too.
        let reach = if erase { 1.5 } else { 0.0 };
        let r = (BRUSH_EDGE + reach).ceil() as isize;
        let (cy, cx) = (y.floor() as isize, x.floor() as isize);
        for py in cy - r..=cy + r {
            for px in cx - r..=cx + r {
                if py < 0 || px < 0 || py >= SIDE as isize || px >= SIDE as isize {
                    continue;
                }
                // Distance from the pixel's centre.
                let d = ((py as f32 + 0.5 - y).powi(2) + (px as f32 + 0.5 - x).powi(2)).sqrt();
                let v = brush(d - reach);
                let cell = &mut self.ink[[py as usize, px as usize]];
                *cell = if erase { cell.min(1.0 - v) } else { cell.max(v) };
            }
        }
    }

    fn line(&mut self, from: (f32, f32), to: (f32, f32), erase: bool) {
        let len = ((to.0 - from.0).powi(2) + (to.1 - from.1).powi(2)).sqrt();
        let steps = (len / 0.25).ceil().max(1.0) as usize;
        for k in 1..=steps {
            let t = k as f32 / steps as f32;
            self.dab(from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t, erase);
        }
    }

    /// Starts a stroke at canvas coordinates `(y, x)` in pixels (a mouse press); it can be undone as one.
    pub fn begin_stroke(&mut self, y: f32, x: f32) {
        self.undo.push(self.ink.clone());
        if self.undo.len() > 256 {
            self.undo.remove(0);
        }
        self.stroking = true;
        self.last = Some((y, x));
        self.dab(y, x, false);
        self.version += 1;
    }

    /// Continues the stroke to `(y, x)` (a mouse drag): a line of dabs from the last point.
    pub fn stroke_to(&mut self, y: f32, x: f32) {
        if !self.stroking {
            self.begin_stroke(y, x);
            return;
        }
        let from = self.last.unwrap_or((y, x));
        self.line(from, (y, x), false);
        self.last = Some((y, x));
        self.version += 1;
    }

    /// Ends the stroke (a mouse release).
    pub fn end_stroke(&mut self) {
        self.stroking = false;
        self.last = None;
    }

    /// Moves the keyboard cursor, staying on the canvas.
    pub fn move_cursor(&mut self, dy: isize, dx: isize) {
        let clamp = |v: usize, d: isize| (v as isize + d).clamp(0, SIDE as isize - 1) as usize;
        self.cursor = (clamp(self.cursor.0, dy), clamp(self.cursor.1, dx));
    }

    /// Paints (or erases) one dab at the cursor, as a stroke of its own.
    pub fn dab_at_cursor(&mut self, erase: bool) {
        self.undo.push(self.ink.clone());
        let (y, x) = (self.cursor.0 as f32 + 0.5, self.cursor.1 as f32 + 0.5);
        self.dab(y, x, erase);
        self.version += 1;
    }

    /// Clears the canvas (undoable).
    pub fn clear(&mut self) {
        if !self.is_empty() {
            self.undo.push(self.ink.clone());
            self.ink.fill(0.0);
            self.version += 1;
        }
    }

    /// Undoes the last stroke, dab or clear; false when there is nothing to undo.
    pub fn undo(&mut self) -> bool {
        match self.undo.pop() {
            Some(previous) => {
                self.ink = previous;
                self.version += 1;
                true
            }
            None => false,
        }
    }

    /// What the network sees: [`preprocess`] of the ink.
    pub fn network_input(&self) -> Array2<f32> {
        preprocess(&self.ink)
    }
}

/// The centre of mass `(row, column)` of a non-negative map in pixel-centre coordinates (pixel `i` at `i + 0.5`),
/// or `None` when it is empty.
pub fn center_of_mass(a: &Array2<f32>) -> Option<(f32, f32)> {
    let (mut m, mut sy, mut sx) = (0.0f64, 0.0f64, 0.0f64);
    for ((y, x), &v) in a.indexed_iter() {
        let v = v.max(0.0) as f64;
        m += v;
        sy += v * (y as f64 + 0.5);
        sx += v * (x as f64 + 0.5);
    }
    (m > 0.0).then(|| ((sy / m) as f32, (sx / m) as f32))
}

/// Bilinear sample of `a` at continuous pixel coordinates (pixel centres at `i + 0.5`), zero outside.
fn bilinear(a: &Array2<f32>, y: f32, x: f32) -> f32 {
    let (h, w) = a.dim();
    let (fy, fx) = (y - 0.5, x - 0.5);
    let (y0, x0) = (fy.floor(), fx.floor());
    let (ty, tx) = (fy - y0, fx - x0);
    let at = |yy: f32, xx: f32| {
        if yy < 0.0 || xx < 0.0 || yy >= h as f32 || xx >= w as f32 {
            0.0
        } else {
            a[[yy as usize, xx as usize]]
        }
    };
    at(y0, x0) * (1.0 - ty) * (1.0 - tx)
        + at(y0, x0 + 1.0) * (1.0 - ty) * tx
        + at(y0 + 1.0, x0) * ty * (1.0 - tx)
        + at(y0 + 1.0, x0 + 1.0) * ty * tx
}

/// MNIST's preprocessing of a drawing (`SIDE × SIDE`, ink in `[0, 1]`): the bounding box of the ink is scaled
/// (anti-aliased: each output pixel averages 4×4 bilinear samples of its footprint) so its longer side is 20
/// pixels, keeping the aspect ratio, and placed in 28×28 so its centre of mass is at the centre (14, 14). An empty
/// drawing stays empty.
pub fn preprocess(ink: &Array2<f32>) -> Array2<f32> {
    let (h, w) = ink.dim();
    let rows: Vec<usize> = (0..h).filter(|&y| ink.row(y).iter().any(|&v| v > 0.0)).collect();
    let cols: Vec<usize> = (0..w).filter(|&x| ink.column(x).iter().any(|&v| v > 0.0)).collect();
    let (Some(&top), Some(&bottom), Some(&left), Some(&right)) = (rows.first(), rows.last(), cols.first(), cols.last())
    else {
        return Array2::zeros((SIDE, SIDE));
    };
    let (bh, bw) = ((bottom - top + 1) as f32, (right - left + 1) as f32);
    let scale = BOX as f32 / bh.max(bw);
    let (th, tw) = (
        ((bh * scale).round() as usize).clamp(1, BOX),
        ((bw * scale).round() as usize).clamp(1, BOX),
    );
    // The scaled digit: output pixel (i, j) covers source [top + i/scale, top + (i+1)/scale).
    const SUB: usize = 4;
    let small = Array2::from_shape_fn((th, tw), |(i, j)| {
        let mut acc = 0.0;
        for a in 0..SUB {
            for b in 0..SUB {
                let y = top as f32 + (i as f32 + (a as f32 + 0.5) / SUB as f32) / scale;
                let x = left as f32 + (j as f32 + (b as f32 + 0.5) / SUB as f32) / scale;
                acc += bilinear(ink, y, x);
            }
        }
        (acc / (SUB * SUB) as f32).clamp(0.0, 1.0)
    });
    let (cy, cx) = center_of_mass(&small).unwrap_or((th as f32 / 2.0, tw as f32 / 2.0));
    let centre = SIDE as f32 / 2.0;
    let (oy, ox) = ((centre - cy).round() as isize, (centre - cx).round() as isize);
    let mut out = Array2::zeros((SIDE, SIDE));
    for ((i, j), &v) in small.indexed_iter() {
        let (y, x) = (i as isize + oy, j as isize + ox);
        if y >= 0 && x >= 0 && (y as usize) < SIDE && (x as usize) < SIDE {
            out[[y as usize, x as usize]] = v;
        }
    }
    out
}
